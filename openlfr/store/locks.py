"""Serialising a rule that reads several rows before it writes (the last active administrator, say): a
compare-and-set on one row cannot hold such a rule, so its writers take turns."""

from __future__ import annotations

import hashlib

from sqlalchemy import text
from sqlalchemy.orm import Session


def _advisory_key(topic: str) -> int:
    """A 64-bit PostgreSQL advisory-lock key for ``topic``."""
    return int.from_bytes(hashlib.sha256(f"openlfr-rule:{topic}".encode()).digest()[:8], "big", signed=True)


def serialise(session: Session, topic: str) -> None:
    """Take, until the transaction ends, the lock that makes writers of ``topic`` take turns; every read after
    it sees what the previous holder committed, so a rule checked on those reads still holds at the commit.

    PostgreSQL: a transaction-level advisory lock on the topic (reads are READ COMMITTED: each sees the last
    commit). SQLite: the database's write lock, taken now rather than at the first write (``BEGIN IMMEDIATE``;
    the driver opens no transaction for reads, so none is open unless this one has already written, in which
    case it holds the write lock already)."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _advisory_key(topic)})
    elif not connection.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
        connection.exec_driver_sql("BEGIN IMMEDIATE")
