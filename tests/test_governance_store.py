"""The server's tables on SQLite and a real PostgreSQL: the migration matches the models, and the audit log
catches rows edited, deleted or inserted directly in the database (by SQL, not through the application)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from openlfr.services import audit_log
from openlfr.settings import get_settings
from openlfr.store import open_store
from openlfr.store.db import Base
from openlfr.store.governance_models import AuditEntry

KEY = b"0123456789abcdef0123456789abcdef"
OUR_TABLES = {
    "users",
    "user_sessions",
    "login_failures",
    "deployments",
    "snapshot_people",
    "snapshot_images",
    "alert_reviews",
    "audit_log",
    "audit_head",
    "console_settings",
}


def test_migration_creates_exactly_the_modelled_tables(store_url: str) -> None:
    store = open_store(get_settings())
    try:
        with store.engine.connect() as connection:
            diffs = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata)
            ours = [d for d in diffs if any(t in repr(d) for t in OUR_TABLES)]
            assert ours == []
            assert set(sa.inspect(connection).get_table_names()) >= OUR_TABLES
            assert connection.execute(sa.text("SELECT seq FROM audit_head WHERE id = 1")).scalar() == 0
    finally:
        store.close()


def _write(store_session_factory: object, n: int) -> None:
    for i in range(n):
        with store_session_factory() as db:  # type: ignore[operator]
            audit_log.record(
                db, KEY, "alice", "operator", "alert.decide", f"alert:{i}", {"decision": "confirmed", "n": i}
            )


def test_audit_verify_catches_direct_database_edits(store_url: str) -> None:
    store = open_store(get_settings())
    try:
        _write(store.session, 6)
        with store.session() as db:
            assert audit_log.verify(db, KEY).ok
            assert [e.seq for e in db.scalars(sa.select(AuditEntry).order_by(AuditEntry.seq))] == [1, 2, 3, 4, 5, 6]

        with store.engine.begin() as c:  # an edit: someone changes what was decided
            c.execute(sa.text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 4"))
        with store.session() as db:
            verdict = audit_log.verify(db, KEY)
        assert (verdict.ok, verdict.first_bad_seq, verdict.problem) == (False, 4, "altered")
        with store.engine.begin() as c:
            c.execute(sa.text("UPDATE audit_log SET actor = 'alice' WHERE seq = 4"))
        with store.session() as db:
            assert audit_log.verify(db, KEY).ok  # put back exactly, it verifies again: the check is on content

        with store.engine.begin() as c:  # a deletion in the middle
            saved = c.execute(sa.text("SELECT * FROM audit_log WHERE seq = 3")).mappings().one()
            c.execute(sa.text("DELETE FROM audit_log WHERE seq = 3"))
        with store.session() as db:
            verdict = audit_log.verify(db, KEY)
        assert (verdict.first_bad_seq, verdict.problem) == (3, "removed")
        with store.engine.begin() as c:
            c.execute(
                sa.text(
                    "INSERT INTO audit_log "
                    "(id, seq, at, clock_at, actor, role, action, target, details, prev_hash, hash) "
                    "VALUES (:id, :seq, :at, :clock_at, :actor, :role, :action, :target, :details, :prev_hash, :hash)"
                ),
                {**saved, "details": _json_text(saved["details"])},
            )
        with store.session() as db:
            assert audit_log.verify(db, KEY).ok

        with store.engine.begin() as c:  # an insertion: a forged entry slipped in at 5, later ones renumbered
            c.execute(sa.text("UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 5"))
            c.execute(sa.text("UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1000"))
            prev = c.execute(sa.text("SELECT hash FROM audit_log WHERE seq = 4")).scalar()
            c.execute(
                sa.text(
                    "INSERT INTO audit_log (seq, at, actor, role, action, target, details, prev_hash, hash) "
                    "VALUES (5, CURRENT_TIMESTAMP, 'mallory', 'operator', 'alert.decide', 'alert:9', '{}', :p, :h)"
                ),
                {"p": prev, "h": "ab" * 32},
            )
        with store.session() as db:
            verdict = audit_log.verify(db, KEY)
        assert (verdict.first_bad_seq, verdict.problem) == (5, "inserted")
        with store.engine.begin() as c:
            c.execute(sa.text("DELETE FROM audit_log WHERE seq = 5 AND actor = 'mallory'"))
            c.execute(sa.text("UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 6"))
            c.execute(sa.text("UPDATE audit_log SET seq = seq - 1001 WHERE seq >= 1000"))
        with store.session() as db:
            assert audit_log.verify(db, KEY).ok

        with store.engine.begin() as c:  # the last entry removed: the head still remembers it
            c.execute(sa.text("DELETE FROM audit_log WHERE seq = 6"))
        with store.session() as db:
            verdict = audit_log.verify(db, KEY)
        assert (verdict.first_bad_seq, verdict.problem) == (6, "removed")
    finally:
        store.close()


def _json_text(value: object) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value)
