"""What ``/health`` says: whether the database can be read and written, and how every live pipeline is doing.

The database is probed for real on each call: a read of the deployments, and a write lock taken and given back
at once (SQLite: ``BEGIN IMMEDIATE`` with a half-second wait, so a file locked by someone else shows; PostgreSQL:
a statement in a transaction). SQLite's ``quick_check`` (damaged pages) runs at most once a minute: it reads the
whole file.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from openlfr.store import Store

INTEGRITY_EVERY_S = 60.0
LOCK_WAIT_S = 0.5


@dataclass
class DatabaseProbe:
    store: Store
    _checked_at: float = -1e9
    _integrity: str | None = None  # None: fine; else what quick_check said
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self) -> dict[str, Any]:
        """``{"ok": bool, "dialect": ..., "error": str | None}``."""
        dialect = self.store.engine.dialect.name
        try:
            if dialect == "sqlite":
                self._probe_sqlite()
            else:
                with self.store.engine.begin() as connection:
                    connection.execute(sa.text("SELECT count(*) FROM deployments"))
        except Exception as exc:  # any driver's error: that is the answer
            text = str(exc).strip().splitlines()
            return {"ok": False, "dialect": dialect, "error": f"{type(exc).__name__}: {text[0] if text else ''}"[:300]}
        return {"ok": True, "dialect": dialect, "error": None}

    def _probe_sqlite(self) -> None:
        path = self.store.engine.url.database
        if not path or path == ":memory:":
            return
        with self._lock:
            due = time.monotonic() - self._checked_at >= INTEGRITY_EVERY_S
        connection = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=LOCK_WAIT_S, isolation_level=None)
        try:
            connection.execute("SELECT count(*) FROM deployments").fetchone()
            if due:
                found = [row[0] for row in connection.execute("PRAGMA quick_check").fetchall()]
                with self._lock:
                    self._checked_at = time.monotonic()
                    self._integrity = None if found == ["ok"] else "; ".join(map(str, found))[:300]
            if self._integrity is not None:
                raise sqlite3.DatabaseError(f"the database file is damaged: {self._integrity}")
            connection.execute("BEGIN IMMEDIATE")  # the write lock: refused while another holds it
            connection.execute("ROLLBACK")
        finally:
            connection.close()
