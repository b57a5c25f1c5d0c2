"""Inputs the database cannot hold are refused at the edge, on SQLite and PostgreSQL, against a real server on
127.0.0.1: ids of 2^63 and more, numbers like 1e20, dates in year 9999 or 0001 with an offset, NUL characters in
the login name and other text; each is a 4xx with a sentence, never a 500 or a traceback. Every answer, the
errors and a 500 included, carries the security headers."""

from __future__ import annotations

import http.client
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from openlfr.governance.roles import Role
from openlfr.services import accounts
from openlfr.store.governance_models import User
from tests.serverkit import LiveServer, add_user, add_watchlist, build_app, configure, draft_body
from tests.test_server_alerts import live_deployment

SECURITY_HEADERS = ("x-content-type-options", "x-frame-options", "referrer-policy", "content-security-policy")
TOO_BIG = 2**63
USERS = [("ann", Role.ADMIN), ("olly", Role.OPERATOR), ("ava", Role.AUTHORISER), ("aud", Role.AUDITOR)]


def token_for(app: FastAPI, username: str) -> str:
    with app.state.server.sessions() as db:
        user = db.query(User).filter_by(username=username).one()
        token = accounts.open_session(db, user, "token", timedelta(hours=1))
        db.commit()
    return token


def window(start: str, end: str) -> dict[str, Any]:
    from datetime import UTC, datetime

    body = draft_body(datetime.now(UTC))
    body.update(starts_at=start, ends_at=end)
    return body


# (who asks, method, path, JSON body or None); each must be refused with a 4xx.
CASES: list[tuple[str, str, str, Any]] = [
    ("olly", "GET", f"/api/alerts/{TOO_BIG}", None),
    ("olly", "GET", f"/api/alerts/{-TOO_BIG - 1}", None),
    ("olly", "GET", f"/api/alerts/{TOO_BIG}/probe.jpg", None),
    ("olly", "POST", f"/api/alerts/{TOO_BIG}/decision", {"decision": "confirmed"}),
    ("olly", "GET", f"/api/alerts/{TOO_BIG}/looks/1.jpg", None),
    ("olly", "GET", f"/api/alerts/1/looks/{TOO_BIG}.jpg", None),
    ("olly", "GET", f"/api/alerts/{TOO_BIG}/references/1.jpg", None),
    ("olly", "POST", f"/api/alerts/{TOO_BIG}/undo", None),
    ("olly", "GET", f"/api/alerts?deployment={TOO_BIG}", None),
    ("olly", "GET", f"/api/deployments/{TOO_BIG}", None),
    ("olly", "GET", f"/alerts/{TOO_BIG}", None),
    ("olly", "GET", f"/deployments/{TOO_BIG}", None),
    ("ann", "POST", f"/api/users/{TOO_BIG}/disable", None),
    ("aud", "GET", "/api/audit?before=1e20", None),
    ("aud", "GET", f"/api/audit?before={TOO_BIG}", None),
    ("aud", "GET", "/api/records?until=9999-12-31", None),
    ("aud", "GET", "/api/records?since=0001-01-01", None),
    ("aud", "GET", "/api/records.csv?until=9999-12-31", None),
    ("aud", "GET", "/api/records.csv?place=quay%00", None),
    ("aud", "GET", "/api/records?kind=parade", None),
    ("aud", "GET", f"/api/records.csv?place={'q' * 301}", None),
    ("olly", "POST", "/api/deployments", window("9999-12-31T23:00:00-05:00", "9999-12-31T23:30:00-05:00")),
    ("olly", "POST", "/api/deployments", window("0001-01-01T00:30:00+05:00", "0001-01-01T01:00:00+05:00")),
    ("olly", "POST", "/api/deployments", window("9999-12-31T22:00:00+00:00", "9999-12-31T23:30:00+00:00")),
    ("ann", "POST", "/api/watchlists", {"name": "night\x00watch", "purpose": "tests"}),
    ("ann", "POST", "/api/watchlists", {"name": "nightwatch", "purpose": "a purpose\x00"}),
    ("olly", "POST", "/api/deployments", {**window("2030-01-01T10:00:00Z", "2030-01-01T11:00:00Z"), "name": "a\x00"}),
    ("ann", "POST", "/api/users", {"username": "new\x00user", "password": "a-long-password-here", "role": "operator"}),
]


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, store_url: str):  # type: ignore[no-untyped-def]
    configure(monkeypatch)
    app = build_app()
    for name, role in USERS:
        add_user(app, name, role)
    add_watchlist(app)

    @app.get("/api/test-failure", include_in_schema=False)
    def failing() -> None:  # an unexpected fault, to see how a 500 is answered
        raise RuntimeError("a fault the server did not foresee, at /srv/openlfr/secret.py line 12")

    live_deployment(app)
    with LiveServer(app) as server:
        yield app, server
    app.state.server.store.close()


def assert_refused_plainly(answer: httpx.Response, what: str, allowed: Callable[[int], bool]) -> None:
    assert allowed(answer.status_code), (what, answer.status_code, answer.text[:300])
    assert "Traceback" not in answer.text and 'File "' not in answer.text, (what, answer.text[:300])
    missing = [h for h in SECURITY_HEADERS if h not in answer.headers]
    assert missing == [], (what, answer.status_code, missing)


def test_edge_inputs_are_refused_with_a_4xx_and_the_headers(served) -> None:  # type: ignore[no-untyped-def]
    app, server = served
    tokens = {name: token_for(app, name) for name, _ in USERS}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for who, method, path, body in CASES:
            headers = {"Authorization": f"Bearer {tokens[who]}"}
            answer = client.request(method, path, headers=headers, json=body)
            assert_refused_plainly(answer, f"{method} {path} {body!r:.80}", lambda s: 400 <= s < 500)


def test_a_nul_in_the_login_name_is_refused_for_anybody(served) -> None:  # type: ignore[no-untyped-def]
    _, server = served
    with httpx.Client(base_url=server.url, timeout=30) as client:
        form = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
        assert form
        for name in ("ol\x00ly", "\x00", "olly\x00' OR 1=1 --"):
            answer = client.post("/login", data={"username": name, "password": "whatever-it-is", "csrf_token": form[1]})
            assert_refused_plainly(answer, f"login {name!r}", lambda s: 400 <= s < 500)


def test_a_500_carries_the_headers_and_no_traceback(served) -> None:  # type: ignore[no-untyped-def]
    app, server = served
    token = token_for(app, "olly")  # who asks is decided first: an anonymous request gets its 401 and no further
    with httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
        answer = client.get("/api/test-failure")
        assert_refused_plainly(answer, "a fault", lambda s: s == 500)
        assert "secret.py" not in answer.text
    # A declared body over the limit is answered before it is sent (a client still sending would see a reset).
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.putrequest("POST", "/api/deployments")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Authorization", f"Bearer {token}")
    connection.putheader("Content-Length", "2000000")
    connection.endheaders()
    refused = connection.getresponse()
    body = refused.read().decode()
    connection.close()
    assert refused.status == 413 and "Traceback" not in body
    assert [h for h in SECURITY_HEADERS if refused.getheader(h) is None] == []
