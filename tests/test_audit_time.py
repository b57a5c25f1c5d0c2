"""Audit times never go backwards, on SQLite and PostgreSQL: with the clock moved back a day, an entry is dated
no earlier than the one before it (and keeps the clock's own reading, under its hash); ``openlfr audit verify``
names an entry dated before its predecessor; entries written before the clock's reading was kept still verify."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timedelta
from itertools import pairwise

import pytest
import sqlalchemy as sa

from openlfr.clock import utc_now
from openlfr.governance.audit import hash_of
from openlfr.services import audit_log
from openlfr.services.context import Context
from openlfr.settings import Settings, get_settings
from openlfr.store import Store, open_store
from openlfr.store.governance_models import AuditEntry, AuditHead
from tests.conftest import OPENLFR_BIN

DAY = timedelta(hours=24)


def entries(store: Store) -> list[AuditEntry]:
    with store.session() as db:
        return list(db.scalars(sa.select(AuditEntry).order_by(AuditEntry.seq)))


def verify_cli() -> tuple[int, dict[str, object]]:
    done = subprocess.run(
        [str(OPENLFR_BIN), "audit", "verify", "--json"], capture_output=True, text=True, env={**os.environ}, timeout=120
    )
    assert done.stdout.strip(), done.stderr
    return done.returncode, json.loads(done.stdout)


def rewrite(store: Store, key: bytes, seq: int, **values: object) -> None:
    """What someone holding the audit key (and the database) could do to the last entry: change it and re-hash."""
    with store.session() as db:
        entry = db.scalars(sa.select(AuditEntry).where(AuditEntry.seq == seq)).one()
        for name, value in values.items():
            setattr(entry, name, value)
        entry.hash = hash_of(entry, key)
        db.execute(sa.update(AuditHead).where(AuditHead.id == 1).values(hash=entry.hash))


def test_audit_times_never_go_backwards(monkeypatch: pytest.MonkeyPatch, store_url: str) -> None:
    settings: Settings = get_settings()
    store = open_store(settings)
    ctx = Context.local(settings, "clerk")
    try:
        readings: list[datetime] = []

        def clock_reading() -> datetime:
            readings.append(utc_now() - offset[0])
            return readings[-1]

        offset = [timedelta(0)]
        monkeypatch.setattr(audit_log, "utc_now", clock_reading)
        for step, moved_back in enumerate((timedelta(0), DAY, DAY, timedelta(0))):
            offset[0] = moved_back  # the machine's clock set back a day for the middle two entries, then put right
            with store.session() as db:
                ctx.audit(db, "test.step", f"step:{step}", {"clock_moved_back_h": moved_back / timedelta(hours=1)})
        written = entries(store)
        assert [e.seq for e in written] == [1, 2, 3, 4]
        assert all(later.at >= earlier.at for earlier, later in pairwise(written))
        assert [e.clock_at for e in written] == readings  # the clock's own reading is kept beside the chain's time
        set_back = written[1].clock_at
        assert set_back is not None and written[1].at == written[2].at == written[0].at > set_back
        with store.session() as db:
            assert audit_log.verify(db, ctx.key).ok

        # Forged with the key: the last entry dated before its predecessor, re-hashed. The chain holds; the time
        # order does not, and verify says so.
        last, before = written[3], written[2]
        rewrite(store, ctx.key, last.seq, at=before.at - timedelta(seconds=1))
        store.close()
        status, verdict = verify_cli()
        assert status == 1 and (verdict["first_bad_seq"], verdict["problem"]) == (last.seq, "backdated"), verdict
        assert f"before entry {before.seq}" in str(verdict["message"]), verdict

        # Put right, then written as entries were before the clock's reading was kept (no clock_at, and not in
        # the hash): such a chain still verifies. Without the key, dropping a kept reading breaks the hash.
        store = open_store(settings)
        rewrite(store, ctx.key, last.seq, at=last.at, clock_at=None)
        with store.session() as db:
            assert audit_log.verify(db, ctx.key).ok
            db.execute(sa.update(AuditEntry).where(AuditEntry.seq == before.seq).values(clock_at=None))
        with store.session() as db:
            verdict_after = audit_log.verify(db, ctx.key)
        assert (verdict_after.first_bad_seq, verdict_after.problem) == (before.seq, "altered")
    finally:
        store.close()
