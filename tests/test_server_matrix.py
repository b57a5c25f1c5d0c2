"""The authorisation matrix: every role (and nobody) against every endpoint of the server.

The expected access below is written out by hand, independently of the ``allow(...)`` declarations in the
code; the test fails if the app has a route this table does not list, so a new endpoint cannot slip in
unchecked. "Reached" means anything but 401/403 (and, for console pages, anything but the login redirect):
a 404 or 422 still proves the role check let the request through.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.routing import APIRoute
from starlette.routing import Mount

from openlfr.governance.roles import Role
from tests.serverkit import PASSWORD, LiveServer, add_user, build_app, configure

A, AU, OP, AD = Role.ADMIN, Role.AUTHORISER, Role.OPERATOR, Role.AUDITOR
EVERYONE = frozenset(Role)
PUBLIC = "public"

EXPECTED: dict[tuple[str, str], frozenset[Role] | str] = {
    ("GET", "/health"): PUBLIC,  # the status only; logged in, the detail (tests/test_camera_secrets.py)
    ("GET", "/health/live"): PUBLIC,
    ("GET", "/metrics"): frozenset({A}),  # counts only, but of every deployment: the admin's
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("POST", "/logout"): EVERYONE,
    ("GET", "/"): EVERYONE,
    ("GET", "/docs"): EVERYONE,
    ("GET", "/openapi.json"): EVERYONE,
    ("GET", "/api/me"): EVERYONE,
    ("GET", "/api/users"): frozenset({A}),
    ("POST", "/api/users"): frozenset({A}),
    ("POST", "/api/users/{user_id}/disable"): frozenset({A}),
    ("POST", "/api/users/{user_id}/enable"): frozenset({A}),
    ("POST", "/api/users/{user_id}/role"): frozenset({A}),
    ("POST", "/api/users/{user_id}/password"): frozenset({A}),
    ("POST", "/api/me/password"): EVERYONE,
    ("GET", "/api/settings"): EVERYONE,
    ("PUT", "/api/settings"): frozenset({A}),
    ("GET", "/api/watchlists"): frozenset({A, AU, OP}),
    ("POST", "/api/watchlists"): frozenset({A}),
    ("POST", "/api/watchlists/{name}/people"): frozenset({A}),
    ("DELETE", "/api/watchlists/{name}/people/{person:person_id}"): frozenset({A}),
    ("POST", "/api/watchlists/{name}/reembed"): frozenset({A}),
    ("GET", "/api/watchlists/{name}/people"): frozenset({A, AU, OP}),
    ("GET", "/api/watchlists/{name}/people/{person:person_id}"): frozenset({A, AU, OP}),
    ("GET", "/api/watchlists/{name}/people/{person:path}/photos/{image_id}.jpg"): frozenset({A}),  # face pictures
    ("POST", "/api/watchlists/{name}/people/{person:path}/expire"): frozenset({A}),
    ("GET", "/api/deployments"): EVERYONE,
    ("POST", "/api/deployments"): frozenset({A, AU, OP}),
    ("PUT", "/api/footage"): frozenset({A, AU, OP}),
    ("GET", "/api/deployments/{deployment_id}"): EVERYONE,
    ("POST", "/api/deployments/{deployment_id}/authorise"): frozenset({AU}),
    ("POST", "/api/deployments/{deployment_id}/cancel"): frozenset({AU, A}),
    ("POST", "/api/deployments/{deployment_id}/end"): frozenset({OP, AU, A}),
    ("GET", "/api/deployments/{deployment_id}/record"): EVERYONE,
    ("GET", "/api/deployments/{deployment_id}/record.csv"): EVERYONE,
    ("GET", "/api/records"): EVERYONE,
    ("GET", "/api/records.csv"): EVERYONE,
    ("GET", "/api/alerts"): frozenset({OP, AU}),
    ("GET", "/api/alerts/{alert_id}"): frozenset({OP, AU}),
    ("GET", "/api/alerts/{alert_id}/probe.jpg"): frozenset({OP, AU}),
    ("GET", "/api/alerts/{alert_id}/reference.jpg"): frozenset({OP, AU}),
    ("GET", "/api/alerts/{alert_id}/looks/{position}.jpg"): frozenset({OP, AU}),  # face pictures, as the probe
    ("GET", "/api/alerts/{alert_id}/references/{position}.jpg"): frozenset({OP, AU}),
    ("POST", "/api/alerts/{alert_id}/decision"): frozenset({OP}),
    ("POST", "/api/alerts/{alert_id}/verify"): frozenset({OP}),
    ("POST", "/api/alerts/{alert_id}/outcome"): frozenset({OP}),
    ("POST", "/api/alerts/{alert_id}/undo"): frozenset({OP}),
    ("POST", "/api/alerts/{alert_id}/hold"): frozenset({AU}),
    ("GET", "/api/events"): frozenset({OP, AU}),
    ("GET", "/api/deployments/{deployment_id}/events"): EVERYONE,  # a search's progress: no alert, no image
    ("GET", "/api/deployments/{deployment_id}/cameras/{camera}/frame.jpg"): frozenset({OP, AU}),
    ("POST", "/api/search"): frozenset({OP, AU}),
    ("GET", "/api/search/references/{image_id}.jpg"): frozenset({OP, AU}),
    ("GET", "/api/audit"): frozenset({AD, A}),
    ("GET", "/api/audit/export"): frozenset({AD, A}),
    ("GET", "/api/audit/verify"): frozenset({AD, A}),
    ("POST", "/api/retention/run"): frozenset({A}),
    ("GET", "/queue"): frozenset({OP, AU}),
    ("GET", "/queue/items"): frozenset({OP, AU}),
    ("GET", "/queue/cameras"): frozenset({OP, AU}),
    ("GET", "/alerts/{alert_id}"): frozenset({OP, AU}),
    ("GET", "/search"): frozenset({OP, AU}),
    ("GET", "/deployments"): EVERYONE,
    ("GET", "/deployments/{deployment_id}"): EVERYONE,
    ("GET", "/records"): EVERYONE,
    ("GET", "/audit"): frozenset({AD, A}),
    ("GET", "/audit/anchor"): frozenset({AD, A}),
    ("GET", "/users"): frozenset({A}),
    ("GET", "/settings"): frozenset({A}),
    ("GET", "/system"): frozenset({A}),
    ("GET", "/watchlists"): frozenset({A, AU, OP}),
    ("POST", "/watchlists/{name}/reembed"): frozenset({A}),
    ("GET", "/watchlists/{name}"): frozenset({A, AU, OP}),
    ("GET", "/watchlists/{name}/people/{person:person_id}"): frozenset({A, AU, OP}),
}

# Path parameters that name nothing: an admitted request ends in 404/422, never in a change.
FILL = {"user_id": "999999", "deployment_id": "999999", "alert_id": "999999", "name": "nowhere", "person": "nobody"}
FILL["camera"] = "entrance"
FILL["image_id"] = "999999"
FILL["position"] = "1"


def concrete(path: str) -> str:
    for key, value in FILL.items():
        path = path.replace("{" + key + "}", value)
    return path


def app_routes(app: object) -> set[tuple[str, str]]:
    """Every (method, path) the app answers, routers included (FastAPI keeps included routers nested)."""
    found: set[tuple[str, str]] = set()

    def walk(routes: list[object], prefix: str) -> None:
        for route in routes:
            if isinstance(route, APIRoute):
                found.update((m, prefix + route.path) for m in route.methods - {"HEAD"})
            elif isinstance(route, Mount):
                # public static files only: the console's own CSS/JS and Swagger UI's
                assert route.path in {"/static", "/docs-assets"}, f"unexpected mount {route.path}"
            elif hasattr(route, "original_router"):
                walk(route.original_router.routes, prefix + route.include_context.prefix)  # type: ignore[attr-defined]
            else:
                raise AssertionError(f"a route of an unknown kind: {route!r}")

    walk(app.routes, "")  # type: ignore[attr-defined]
    return found


def _login(base: str, username: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=base, follow_redirects=False, timeout=10)
    page = client.get("/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    answer = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token})
    assert answer.status_code == 303, answer.text
    return client, client.get("/api/me").json()["csrf_token"]


def _call(client: httpx.Client, method: str, path: str, csrf: str | None) -> tuple[int, str]:
    """The status, and where a redirect points (a console page sends nobody to the login page)."""
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    url = concrete(path)
    if path == "/api/events":
        with client.stream(method, url, headers=headers) as answer:
            return answer.status_code, ""
    if method == "GET":
        answer = client.get(url, headers=headers)
    else:
        # An empty JSON object: an admitted request fails validation (422) or finds nothing (404); nothing changes.
        answer = client.request(method, url, headers=headers, json={})
    return answer.status_code, answer.headers.get("location", "")


def reached(answer: tuple[int, str]) -> bool:
    status, location = answer
    return status not in (401, 403) and not (status == 303 and location.startswith("/login"))


@pytest.fixture
def running(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    configure(monkeypatch, OPENLFR_LOGIN_MAX_FAILURES="1000", OPENLFR_LOGIN_IP_MAX_FAILURES="1000")
    app = build_app()
    for role in Role:
        add_user(app, f"user-{role.value}", role)
    with LiveServer(app) as server:
        yield app, server


def test_every_route_is_in_the_matrix(running) -> None:  # type: ignore[no-untyped-def]
    app, _ = running
    assert app_routes(app) == set(EXPECTED), "a route was added or removed: list it in EXPECTED with its roles"


def test_authorisation_matrix(running) -> None:  # type: ignore[no-untyped-def]
    _, server = running
    failures: list[str] = []
    anonymous = httpx.Client(base_url=server.url, follow_redirects=False, timeout=10)
    for (method, path), allowed in sorted(EXPECTED.items()):
        answer = _call(anonymous, method, path, None)
        status = answer[0]
        if allowed == PUBLIC:
            if not reached(answer) or status >= 500:
                failures.append(f"anonymous {method} {path}: {status}, expected to be reachable")
        elif reached(answer):
            failures.append(f"anonymous {method} {path}: reached ({status})")
        elif path.startswith("/api/") and status != 401:
            failures.append(f"anonymous {method} {path}: {status}, expected 401")
    for role in Role:
        client, csrf = _login(server.url, f"user-{role.value}")
        for (method, path), allowed in sorted(EXPECTED.items()):
            if (method, path) in {("POST", "/logout"), ("POST", "/login")}:
                continue  # logging out would end the session this loop uses; checked below
            answer = _call(client, method, path, csrf)
            status = answer[0]
            admitted = allowed == PUBLIC or role in allowed
            if status >= 500:
                failures.append(f"{role.value} {method} {path}: server error {status}")
            elif admitted and not reached(answer):
                failures.append(f"{role.value} {method} {path}: refused ({status}) but the role is allowed")
            elif not admitted and status != 403:
                failures.append(f"{role.value} {method} {path}: {status}, expected 403")
        assert client.post("/logout", headers={"X-CSRF-Token": csrf}).status_code == 303
        assert client.get("/api/me").status_code == 401  # the session is gone
    assert not failures, "\n".join(failures)


def test_writes_need_the_csrf_token_and_tokens_work_without_cookies(running) -> None:  # type: ignore[no-untyped-def]
    app, server = running
    client, _ = _login(server.url, "user-admin")
    body = {"require_second_verifier": False}
    assert client.put("/api/settings", json=body).status_code == 403  # no token
    assert client.put("/api/settings", json=body, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert client.get("/api/settings").json()["require_second_verifier"] is True  # unchanged

    # An API token (bearer) carries no cookie, so no CSRF applies; the role check still does.
    from openlfr.services import accounts as auth
    from openlfr.store.governance_models import User

    with app.state.server.sessions() as db:
        operator = db.query(User).filter_by(username="user-operator").one()
        token = auth.open_session(db, operator, "token", timedelta(hours=1))
        expired = auth.open_session(
            db, operator, "token", timedelta(hours=1), now=datetime.now(UTC) - timedelta(hours=2)
        )
        db.commit()
    api = httpx.Client(base_url=server.url, timeout=10)
    assert api.get("/api/alerts", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert api.put("/api/settings", json=body, headers={"Authorization": f"Bearer {token}"}).status_code == 403
    assert api.get("/api/alerts", headers={"Authorization": f"Bearer {expired}"}).status_code == 401
    assert api.get("/api/alerts", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    # A cookie session's token is not a bearer token, and a bearer token is not a cookie.
    assert api.get("/api/alerts", cookies={"openlfr_session": token}).status_code == 401
