"""Long lists a page at a time, paged by the database: the page's rows, "1–50 of 1,234", and links to the pages
before and after it that keep the list's filters in the query string.

Two ways to page. By number (``numbered``, LIMIT/OFFSET) for lists that stay short enough to count and skip
through: the queue, deployments, records. By key (``keyed``: the rows before or after a key, newest first) for the
audit log, which only grows: a page never shifts when entries are written while someone reads, and a deep page
costs an index lookup rather than skipping every row before it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Select, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

AnySelect = Select[*tuple[Any, ...]]  # a query of any columns
PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_SIZE = 50
MAX_PAGE = 1_000_000  # a bound for the query string's numbers, far past any list


@dataclass(frozen=True)
class Page:
    """One page of a list: its rows, where they sit in the whole (``start``, 1-based; 0 for an empty list) and
    the links to the neighbouring pages (None at either end)."""

    items: list[Any]
    total: int
    start: int
    prev_url: str | None
    next_url: str | None
    size: int = DEFAULT_SIZE

    @property
    def end(self) -> int:
        return self.start + len(self.items) - 1 if self.items else 0

    @property
    def summary(self) -> str:
        """``1–50 of 1,234`` (``0 of 0`` for an empty list)."""
        if not self.items:
            return f"0 of {self.total:,}"
        return f"{self.start:,}–{self.end:,} of {self.total:,}"


def page_size(asked: int | None) -> int:
    """The page size asked for if it is one of ``PAGE_SIZES``, else the default."""
    return asked if asked in PAGE_SIZES else DEFAULT_SIZE


def link(path: str, params: Mapping[str, object]) -> str:
    """``path`` with the parameters that are set (not None, not empty) as its query string, in the order given."""
    pairs = [(key, str(value)) for key, value in params.items() if value is not None and value != ""]
    return f"{path}?{urlencode(pairs)}" if pairs else path


def moment(text: str, label: str, problems: list[str]) -> datetime | None:
    """A time typed in a filter form (a date, or a date and time; UTC unless it names its zone), None if empty.
    One that is not a time, or outside 1970-2999, is left out of the filter and said in ``problems``."""
    text = text.strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
        value = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        problems.append(f"{label}: '{text}' is not a date and time (YYYY-MM-DD HH:MM, UTC); not applied")
        return None
    if not 1970 <= value.year <= 2999:
        problems.append(f"{label}: a time between 1970 and 2999 (UTC); not applied")
        return None
    return value


def form_time(value: datetime | None) -> str:
    """A time as a ``datetime-local`` input shows it (UTC, to the second)."""
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def count(db: Session, query: AnySelect) -> int:
    return int(db.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0)


def _rows(db: Session, query: AnySelect) -> list[Any]:
    """Entities for a query of one entity (``select(Deployment)``), row tuples for a query of several."""
    if len(query.column_descriptions) == 1:
        return list(db.scalars(query))
    return [tuple(row) for row in db.execute(query)]


def numbered(db: Session, query: AnySelect, number: int, size: int, page_link: Callable[[int], str]) -> Page:
    """Page ``number`` (from 1; past the last page: the last page) of the ordered ``query``; ``page_link(n)`` is
    the address of page n with the list's filters."""
    size = page_size(size)
    total = count(db, query)
    last = max(1, -(-total // size))
    number = min(max(1, number), last)
    items = _rows(db, query.limit(size).offset((number - 1) * size))
    return Page(
        items=items,
        total=total,
        start=(number - 1) * size + 1 if items else 0,
        prev_url=page_link(number - 1) if number > 1 else None,
        next_url=page_link(number + 1) if number < last else None,
        size=size,
    )


def keyed(
    db: Session,
    query: AnySelect,
    key: InstrumentedAttribute[int],
    key_of: Callable[[Any], int],
    size: int,
    before: int | None,
    after: int | None,
    page_link: Callable[[Mapping[str, int]], str],
) -> Page:
    """The ``size`` rows of ``query`` (not ordered: this orders it by ``key``, newest first) with a key below
    ``before``, or else just above ``after`` (the page before), or else the newest. ``page_link({"before": k})``
    is the address of the page starting below k, with the list's filters."""
    size = page_size(size)
    newest_first = query.order_by(key.desc())
    if after is not None and before is None:
        items = list(reversed(_rows(db, query.where(key > after).order_by(key.asc()).limit(size))))
        if len(items) < size:  # fewer than a page above it: the newest page, full
            items = _rows(db, newest_first.limit(size))
    else:
        items = _rows(db, (newest_first if before is None else newest_first.where(key < before)).limit(size))
    total = count(db, query)
    if not items:
        return Page(items, total, 0, page_link({}) if total else None, None, size)
    start = count(db, query.where(key > key_of(items[0]))) + 1
    end = start + len(items) - 1
    return Page(
        items=items,
        total=total,
        start=start,
        prev_url=page_link({"after": key_of(items[0])}) if start > 1 else None,
        next_url=page_link({"before": key_of(items[-1])}) if end < total else None,
        size=size,
    )
