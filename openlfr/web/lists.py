"""The deployments list and the records list, filtered and paged, for the pages that show them
(``openlfr.web.deployments``): what each reads from the query string, and what its partial template needs.

A filter's value that is not one of its choices, or a page number that is not a number, is ignored (the whole
list, the first page) rather than refused: the query string is typed by hand as often as by the form.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from fastapi import Request
from sqlalchemy.orm import Session

from openlfr.errors import InvalidText
from openlfr.governance import deployments
from openlfr.services import listings, records
from openlfr.text import visible_text
from openlfr.web import paging

MAX_TEXT = 300  # a place, a camera: longer than any stored one


def number(request: Request, name: str, default: int) -> int:
    try:
        value = int(request.query_params.get(name, ""))
    except ValueError:
        return default
    return value if 0 < value <= paging.MAX_PAGE else default


def choice(request: Request, name: str, choices: tuple[str, ...]) -> str:
    value = request.query_params.get(name, "")
    return value if value in choices else ""


def text(request: Request, name: str, problems: list[str] | None = None) -> str:
    """A text filter (a place, a camera): trimmed; left out (and said in ``problems``) if it holds a character
    that is not shown as itself (a NUL, say, which no stored name holds and PostgreSQL refuses)."""
    return visible(request.query_params.get(name, "")[:MAX_TEXT], name, problems)


def visible(value: str, label: str, problems: list[str] | None = None) -> str:
    try:
        return visible_text(value.strip(), label)
    except InvalidText as refused:
        if problems is not None:
            problems.append(f"{refused}; not applied")
        return ""


def deployments_list(request: Request, db: Session, moment: datetime) -> dict[str, Any]:
    """The deployments page's list (``deployments_list.html``): filtered by state (phase), kind and place."""
    where = listings.DeploymentFilter(
        phase=choice(request, "state", listings.PHASES),
        kind=choice(request, "kind", listings.KINDS),
        place=text(request, "place"),
    )
    size = paging.page_size(number(request, "size", paging.DEFAULT_SIZE))
    kept = {**where.as_params(), "size": size if size != paging.DEFAULT_SIZE else None}
    page = paging.numbered(
        db,
        listings.deployments_query(where, moment),
        number(request, "page", 1),
        size,
        lambda n: paging.link("/deployments", {**kept, "page": n if n > 1 else None}),
    )
    return {
        "page": page,
        "rows": [(row, deployments.phase(row, moment).value) for row in page.items],
        "filters": where,
        "phases": listings.PHASES,
        "kinds": listings.KINDS,
        "filtered": any(where.as_params().values()),
        "size": size,
        "sizes": paging.PAGE_SIZES,
    }


def _day(request: Request, name: str) -> date | None:
    try:
        return date.fromisoformat(request.query_params.get(name, ""))
    except ValueError:
        return None


def records_list(request: Request, db: Session, moment: datetime) -> dict[str, Any]:
    """The records page: the deployments that ran in a period (``since``..``until``, days, both included; by
    default the month so far), filtered by kind and place, a page of records at a time."""
    start, stop = records.period(_day(request, "since"), _day(request, "until"))
    since, until = start.date().isoformat(), (stop - timedelta(days=1)).date().isoformat()
    where = listings.DeploymentFilter(kind=choice(request, "kind", listings.KINDS), place=text(request, "place"))
    size = paging.page_size(number(request, "size", paging.DEFAULT_SIZE))
    kept: dict[str, object] = {"since": since, "until": until, "kind": where.kind, "place": where.place}
    kept["size"] = size if size != paging.DEFAULT_SIZE else None
    page = paging.numbered(
        db,
        records.period_query(start, stop).where(*where.conditions(moment)),
        number(request, "page", 1),
        size,
        lambda n: paging.link("/records", {**kept, "page": n if n > 1 else None}),
    )
    return {
        "page": page,
        "rows": [records.record_of(db, row) for row in page.items],
        "since": since,
        "until": until,
        "filters": where,
        "kinds": listings.KINDS,
        "csv_link": paging.link(
            "/api/records.csv", {"since": since, "until": until, "kind": where.kind, "place": where.place}
        ),
    }
