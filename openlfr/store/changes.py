"""Announcing committed changes to the tables the console follows, so open event streams learn of them at once.

Every engine made by ``make_engine`` watches its own statements: a transaction that wrote to one of
``WATCHED_TABLES`` announces, once committed, which of them changed. On PostgreSQL the announcement is a
``NOTIFY`` on ``CHANNEL`` sent inside the transaction (PostgreSQL delivers it at commit, to every process that
listens: other server replicas, whatever process wrote); in every case the engine's subscribers in this process are
called when the connection goes back to the pool, after the commit. Writes from another process on SQLite are not
announced: whoever follows the tables also polls (``openlfr.runtime.live_events``).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

CHANNEL = "openlfr_changes"
# What the console's event stream shows: alerts and their reviews, live deployments, who is logged in.
WATCHED_TABLES = ("alerts", "alert_reviews", "deployments", "user_sessions", "users")
_WRITES_TO = re.compile(
    r'^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+"?({tables})\b'.format(tables="|".join(WATCHED_TABLES)),
    re.IGNORECASE,
)
_CHANGING, _CHANGED = "openlfr_changing_tables", "openlfr_changed_tables"

Subscriber = Callable[[frozenset[str]], None]
_subscribers: dict[int, list[Subscriber]] = {}  # by id() of the engine whose commits they hear of
_subscribers_lock = threading.Lock()


def subscribe(engine: Engine, subscriber: Subscriber) -> Callable[[], None]:
    """Call ``subscriber(tables)`` after each commit through ``engine`` that changed watched tables; returns the
    function that unsubscribes. Subscribers run on the committing thread: they must return at once."""
    with _subscribers_lock:
        _subscribers.setdefault(id(engine), []).append(subscriber)

    def unsubscribe() -> None:
        with _subscribers_lock:
            listed = _subscribers.get(id(engine), [])
            if subscriber in listed:
                listed.remove(subscriber)
            if not listed:
                _subscribers.pop(id(engine), None)

    return unsubscribe


def changed_tables(payload: str) -> frozenset[str]:
    """The tables named in a ``NOTIFY`` payload (unknown names are ignored)."""
    return frozenset(name for name in payload.split(",") if name in WATCHED_TABLES)


def watch(engine: Engine) -> None:
    """Announce this engine's committed changes to watched tables (``make_engine`` calls it)."""
    notify = engine.dialect.name == "postgresql"
    event.listen(engine, "before_cursor_execute", _note_write)
    event.listen(engine, "commit", _on_commit if notify else _mark_committed)
    event.listen(engine, "rollback", _forget)
    key = id(engine)

    def announce(_dbapi_connection: Any, record: Any) -> None:
        tables = record.info.pop(_CHANGED, None) if record is not None else None
        if tables:
            _announce(key, frozenset(tables))

    event.listen(engine, "checkin", announce)


def _note_write(
    connection: sa.Connection, _cursor: Any, statement: str, _parameters: Any, _context: Any, _many: bool
) -> None:
    match = _WRITES_TO.match(statement)
    if match:
        connection.info.setdefault(_CHANGING, set()).add(match.group(1).lower())


def _mark_committed(connection: sa.Connection) -> None:
    tables = connection.info.pop(_CHANGING, None)
    if tables:
        connection.info.setdefault(_CHANGED, set()).update(tables)


def _on_commit(connection: sa.Connection) -> None:
    tables = connection.info.get(_CHANGING)
    if tables:
        # Inside the transaction that is about to commit: PostgreSQL sends it with the commit, or not at all.
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute("SELECT pg_notify(%s, %s)", (CHANNEL, ",".join(sorted(tables))))
        finally:
            cursor.close()
    _mark_committed(connection)


def _forget(connection: sa.Connection) -> None:
    connection.info.pop(_CHANGING, None)


def _announce(engine_key: int, tables: frozenset[str]) -> None:
    with _subscribers_lock:
        subscribers = list(_subscribers.get(engine_key, ()))
    for subscriber in subscribers:
        try:
            subscriber(tables)
        except Exception:  # a subscriber's fault must never fail the commit that has already happened
            log.exception("a change subscriber failed")
