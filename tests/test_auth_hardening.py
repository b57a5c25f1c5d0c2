"""Who is asking, decided first, against one real ``openlfr serve`` reached from several loopback addresses
(127.0.0.x) (issue 17, items 16 and 17):

- an anonymous request, any method, any /api path, is answered 401 before routing, validation or body limits
  (no 404, 405 or 422 that maps the route table);
- failed bearer tokens are counted per address like failed logins (429 past the limit, even for a right token from
  that address) and logged without the token;
- five wrong passwords lock a name only from the address that sent them: the real user logs in from their own
  address, and the 20-per-address limit still holds.

The checks share one server; each uses addresses of its own, so the counts do not meet.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import httpx
import pytest

from openlfr.settings import Settings
from tests.serverkit import PASSWORD
from tests.test_upload_limits import Serve, operator_token

LIMITS = Settings()


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    server = Serve(tmp_path_factory.mktemp("auth-serve"))
    server.start()
    server.token = operator_token(server)  # type: ignore[attr-defined]  # olly, an operator
    try:
        yield server
    finally:
        server.stop()


def client(server: Serve, address: str, token: str | None = None) -> httpx.Client:
    """A client whose requests come from ``address`` (any 127.0.0.x reaches the server on loopback)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=server.url, transport=transport, headers=headers, timeout=60, follow_redirects=False)


def log_in(http: httpx.Client, username: str, password: str) -> int:
    page = http.get("/login")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    answer = http.post("/login", data={"username": username, "password": password, "csrf_token": match[1]})
    return answer.status_code


# Method, path and body: a route answered with another method, no route at all, a path parameter of the wrong
# type, a body that is not JSON, a body over the limit, the API's own documents.
PROBES = [
    ("GET", "/api/footage", None),
    ("DELETE", "/api/me", None),
    ("POST", "/api/no/such/route", None),
    ("GET", "/api", None),
    ("PATCH", "/api/users/not-a-number/password", None),
    ("POST", "/api/users", b"{not json"),
    ("PUT", "/api/settings", b"{}"),
    ("POST", "/api/search", b"x" * 2_000_000),
    ("OPTIONS", "/api/alerts", None),
    ("GET", "/api/deployments/not-a-number", None),
    ("POST", "/openapi.json", None),
]


def test_anonymous_requests_meet_authentication_before_the_route_table(serve: Serve) -> None:
    with client(serve, "127.0.0.2") as anonymous, client(serve, "127.0.0.2", serve.token) as olly:  # type: ignore[attr-defined]
        for method, path, body in PROBES:
            answer = anonymous.request(method, path, content=body)
            assert answer.status_code == 401, (method, path, answer.status_code, answer.text)
            assert answer.json() == {"detail": "log in first"} and answer.headers["www-authenticate"] == "Bearer"
        # A page a browser asks for is answered with the login page; the browser's own fetches (its favicon, an
        # image) are not: sent to /login they would replace the login form's CSRF cookie, expiring the form.
        page = anonymous.get("/queue", headers={"accept": "text/html,application/xhtml+xml"})
        assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Fqueue"
        icon = anonymous.get("/favicon.ico", headers={"accept": "image/avif,image/webp,*/*"})
        assert icon.status_code == 401 and "set-cookie" not in icon.headers
        # Logged in, the route table answers as before: the probes above were refused for who asked, not what.
        assert olly.get("/api/footage").status_code == 405
        assert olly.post("/api/no/such/route").status_code == 404
        assert olly.get("/api/deployments/not-a-number").status_code == 422


def test_failed_bearer_tokens_are_throttled_per_address_and_logged(serve: Serve) -> None:
    log_start = (serve.root / "serve.log").stat().st_size
    limit = LIMITS.login_ip_max_failures
    guesses = [secrets.token_urlsafe(32) for _ in range(limit + 5)]
    statuses = []
    for guess in guesses:
        with client(serve, "127.0.0.3", guess) as guesser:
            statuses.append(guesser.get("/api/me").status_code)
    assert statuses == [401] * limit + [429] * 5, statuses
    # Past the limit no token from that address is even looked up, a right one included; another address is
    # not affected, and the address's failed tokens count against its logins as its failed logins do.
    with client(serve, "127.0.0.3", serve.token) as same_address:  # type: ignore[attr-defined]
        throttled = same_address.get("/api/me")
        assert throttled.status_code == 429 and "too many" in throttled.json()["detail"]
        assert log_in(same_address, "olly", PASSWORD) == 429
    with client(serve, "127.0.0.4", serve.token) as elsewhere:  # type: ignore[attr-defined]
        assert elsewhere.get("/api/me").json()["username"] == "olly"

    log = (serve.root / "serve.log").read_bytes()[log_start:].decode(errors="replace")
    refusals = [line for line in log.splitlines() if "bearer token" in line and "127.0.0.3" in line]
    assert len(refusals) >= limit, log[-3000:]
    leaked = [guess for guess in guesses if guess in log or guess[:12] in log]
    assert not leaked and serve.token[:12] not in log  # type: ignore[attr-defined]


def test_a_stranger_cannot_lock_the_user_out_of_their_own_address(serve: Serve) -> None:
    with client(serve, "127.0.0.5") as stranger:
        tries = [log_in(stranger, "olly", f"guess-number-{i}") for i in range(LIMITS.login_max_failures + 1)]
    assert tries == [401] * LIMITS.login_max_failures + [429], tries
    with client(serve, "127.0.0.6") as olly:
        assert log_in(olly, "olly", PASSWORD) == 303
    # The limit per address holds, whatever names are tried.
    with client(serve, "127.0.0.7") as sprayer:
        names = [f"someone-{i:02d}" for i in range(LIMITS.login_ip_max_failures)]
        assert [log_in(sprayer, name, "spray-password") for name in names] == [401] * len(names)
        assert log_in(sprayer, "olly", PASSWORD) == 429
