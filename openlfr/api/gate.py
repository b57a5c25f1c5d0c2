"""Who asks is decided before anything else: before routing, validation and body limits, an anonymous request
for anything but the few public paths is answered 401 (the API) or sent to the login page (the console). So no
status (404, 405, 413, 422) tells a stranger which routes exist, which methods they take or what they read.

The principal found here is left in the request's state, where ``deps.authenticate`` takes it: one look-up per
request. Roles and CSRF tokens are still checked by each route (``deps.allow``).
"""

from __future__ import annotations

import json
from urllib.parse import quote

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from openlfr.api.asgi import HttpMiddleware
from openlfr.api.deps import AUTHENTICATED, authenticate
from openlfr.errors import LoginThrottled

# Open to anyone: the login form, the health checks (which say more to a login), and the files the login page and
# the docs page load. Anything else needs a login: a new public path must be named here.
PUBLIC_PATHS = frozenset({"/login", "/health"})
PUBLIC_PREFIXES = ("/static/", "/docs-assets/", "/health/")
DOCUMENTS = frozenset({"/openapi.json", "/docs", "/health"})


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def answers_json(path: str) -> bool:
    """Whether ``path`` is answered in JSON (the API and its documents) rather than as a console page."""
    return path == "/api" or path.startswith("/api/") or path in DOCUMENTS


async def _answer(send: Send, status: int, headers: dict[str, str], body: bytes = b"") -> None:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in {**headers, "content-length": str(len(body))}.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Send, status: int, detail: str, headers: dict[str, str]) -> None:
    body = json.dumps({"detail": detail}).encode()
    await _answer(send, status, {"content-type": "application/json", **headers}, body)


def wants_a_page(request: Request) -> bool:
    """Whether a browser asks to show this as a page (so the login page is the answer). A browser's own fetches (the
    favicon, images, scripts) are answered 401: sent to the login page, they would load it behind the user's back
    and replace the login form's CSRF cookie, so the form the user is looking at would expire."""
    return request.method in {"GET", "HEAD"} and "text/html" in request.headers.get("accept", "")


class AuthenticateFirst(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if is_public(path):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            principal = await authenticate(request)
        except LoginThrottled as refused:
            window = str(request.app.state.server.settings.login_window_seconds)
            await _send_json(send, 429, str(refused), {"retry-after": window})
            return
        if principal is None:
            if answers_json(path) or not wants_a_page(request):
                await _send_json(send, 401, "log in first", {"www-authenticate": "Bearer"})
            else:
                query = scope.get("query_string", b"").decode("latin-1")
                target = quote(path + (f"?{query}" if query else ""), safe="")
                await _answer(send, 303, {"location": f"/login?next={target}"})
            return
        setattr(request.state, AUTHENTICATED, principal)
        await self.app(scope, receive, send)
