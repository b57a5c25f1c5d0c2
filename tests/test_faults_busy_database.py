"""The API while the database does not answer (issue 11): another process holds SQLite's write lock, so a write
waits out the busy timeout and fails. The answer is a 503 that says to retry (``Retry-After``), with the security
headers of every answer; nothing of the refused change is kept, and once the lock is gone the same request works.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from openlfr.governance.roles import Role
from openlfr.store import db as store_db
from openlfr.store.governance_models import Deployment
from tests.serverkit import JUSTIFICATION, add_user, add_watchlist, build_app, configure, draft_body, login

BUSY_TIMEOUT_MS = 300  # the store's wait for a writer, short so the test does not sit out the default 10 s
# Sitting out the default takes at least this long, so a refusal sooner shows the short wait applied, however
# slow a busy machine is (a bound such as 5 s below it fails for nothing when the machine is loaded).
DEFAULT_BUSY_TIMEOUT_S = store_db.SQLITE_BUSY_TIMEOUT_MS / 1000


@contextmanager
def write_locked(database: Path) -> Iterator[None]:
    """SQLite's write lock held by a connection of its own, as another process holding a transaction open would."""
    locker = sqlite3.connect(database, isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")
        yield
        locker.execute("ROLLBACK")
    finally:
        locker.close()


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Iterator[FastAPI]:
    configure(monkeypatch)
    monkeypatch.setattr(store_db, "SQLITE_BUSY_TIMEOUT_MS", BUSY_TIMEOUT_MS)
    application = build_app()
    for name, role in [("olly", Role.OPERATOR), ("ava", Role.AUTHORISER)]:
        add_user(application, name, role)
    add_watchlist(application)
    yield application
    application.state.server.store.close()


def test_ending_a_deployment_while_the_database_is_locked_answers_503_then_works(app: FastAPI) -> None:
    olly, ava = login(app, "olly"), login(app, "ava")
    made = olly.post("/api/deployments", json=draft_body(datetime.now(UTC) - timedelta(minutes=1)))
    assert made.status_code == 201, made.text
    deployment_id = made.json()["id"]
    authorised = ava.post(f"/api/deployments/{deployment_id}/authorise", json={"justification": JUSTIFICATION})
    assert authorised.status_code == 200, authorised.text
    store = app.state.server.store
    database = Path(str(store.engine.url.database))

    with write_locked(database):
        started = time.monotonic()
        refused = olly.post(f"/api/deployments/{deployment_id}/end")
        waited = time.monotonic() - started
        # A refusal is answered only once it is audited: not audited now, so not a 403 but the same 503.
        unaudited = olly.post(f"/api/deployments/{deployment_id}/cancel", json={"reason": "not mine to cancel"})

    assert refused.status_code == 503, refused.text
    assert int(refused.headers["retry-after"]) > 0
    assert "database" in refused.json()["detail"] and "try again" in refused.json()["detail"]
    for header, value in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ]:
        assert refused.headers.get(header) == value, header
    assert "default-src 'self'" in refused.headers["content-security-policy"]
    assert unaudited.status_code == 503 and "retry-after" in unaudited.headers, unaudited.text
    assert waited < DEFAULT_BUSY_TIMEOUT_S, (
        f"waited {waited:.1f} s: the busy timeout of {BUSY_TIMEOUT_MS} ms did not apply"
    )
    with store.engine.connect() as connection:
        status = connection.execute(sa.select(Deployment.status).where(Deployment.id == deployment_id)).scalar_one()
    assert status == "authorised", "the refused end was half-written"

    ended = olly.post(f"/api/deployments/{deployment_id}/end")
    assert ended.status_code == 200, ended.text
    assert ended.json()["phase"] == "ended"
    assert olly.post(f"/api/deployments/{deployment_id}/cancel", json={"reason": "not mine"}).status_code == 403
