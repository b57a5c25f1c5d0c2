"""Who a token is, remembered for a second (services/accounts.PrincipalCache), on SQLite and PostgreSQL: never
longer than the session lasts, forgotten at once when this process changes accounts or sessions, and another
process's change seen within the cache's time to live."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from openlfr.governance.roles import Role
from openlfr.services import accounts
from openlfr.services.accounts import Principal, PrincipalCache
from openlfr.settings import get_settings
from openlfr.store.db import open_store
from openlfr.store.governance_models import User, UserSession
from tests.serverkit import add_user, build_app, configure


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, store_url: str):  # type: ignore[no-untyped-def]
    configure(monkeypatch)
    application = build_app()
    add_user(application, "olly", Role.OPERATOR)
    yield application
    application.state.server.store.close()


def token_of(app, username: str) -> str:  # type: ignore[no-untyped-def]
    with app.state.server.sessions() as db:
        user = db.query(User).filter_by(username=username).one()
        token = accounts.open_session(db, user, "token", timedelta(hours=1))
        db.commit()
    return token


def asks(app, token: str) -> int:  # type: ignore[no-untyped-def]
    return TestClient(app).get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code


def test_a_session_ended_in_this_process_is_refused_at_once(app) -> None:  # type: ignore[no-untyped-def]
    token = token_of(app, "olly")
    with TestClient(app) as client:  # the server's lifespan runs: its event board hears of the commits
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/me", headers=headers).status_code == 200  # remembered from here on
        assert app.state.server.principals.get(token, "token") is not None
        with app.state.server.sessions() as db:  # not through the API: a commit on the server's own engine
            accounts.close_session(db, token)
            db.commit()
        assert app.state.server.principals.get(token, "token") is None
        assert client.get("/api/me", headers=headers).status_code == 401


def test_a_session_ended_by_another_process_is_refused_within_the_time_to_live(app) -> None:  # type: ignore[no-untyped-def]
    token = token_of(app, "olly")
    assert asks(app, token) == 200
    other = open_store(get_settings())  # another engine, as `openlfr users ...` in another process would have
    try:
        with other.session() as db:
            db.execute(sa.delete(UserSession).where(UserSession.token_hash == accounts.token_digest(token)))
            db.commit()
    finally:
        other.close()
    time.sleep(app.state.server.principals.ttl_s + 0.3)
    assert asks(app, token) == 401


def test_a_token_made_by_another_process_works_at_once(app) -> None:  # type: ignore[no-untyped-def]
    assert asks(app, "not-a-token-of-anyone") == 401  # a refusal is not remembered ...
    token = token_of(app, "olly")
    assert asks(app, token) == 200  # ... so a new token is not refused for a while


def test_never_remembered_past_the_session_or_across_a_change() -> None:
    cache = PrincipalCache(ttl_s=60)
    olly = Principal(1, "olly", Role.OPERATOR, "token", "csrf")
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    cache.remember("t1", "token", olly, expires_at=now + timedelta(seconds=5), since=cache.generation())
    assert cache.get("t1", "token", now) == olly
    assert cache.get("t1", "cookie", now) is None  # a token is not a cookie
    assert cache.get("t1", "token", now + timedelta(seconds=5)) is None  # the session itself has expired

    # A lookup that began before an account changed is not remembered: it may have read the old answer.
    began = cache.generation()
    cache.forget()
    cache.remember("t2", "token", olly, expires_at=now + timedelta(hours=1), since=began)
    assert cache.get("t2", "token", now) is None

    cache.remember("t3", "token", olly, expires_at=now + timedelta(hours=1), since=cache.generation())
    cache.forget(frozenset({"alerts"}))  # no account table: nothing forgotten
    assert cache.get("t3", "token", now) == olly
    cache.forget(frozenset({"users"}))
    assert cache.get("t3", "token", now) is None
