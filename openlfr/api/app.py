"""The HTTP plumbing of the operator server: body limits, security headers, the error answers (one status per
error type) and the API's own documentation pages. The application itself is put together in one place,
``openlfr.server.create_app`` (the composition root), which ``openlfr serve`` runs under uvicorn."""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import StatementError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openlfr.api.asgi import HttpMiddleware
from openlfr.api.contract import allowed_methods, install_contract
from openlfr.api.deps import AnyPrincipal, Forbidden, NotAuthenticated, own_write
from openlfr.api.enrol_upload import MAX_FILES
from openlfr.api.gate import AuthenticateFirst, answers_json
from openlfr.errors import (
    EnrolmentRefused,
    LoginRefused,
    LoginThrottled,
    ModelNotBuilt,
    NotFound,
    OpenLFRError,
    UploadRefused,
    UploadTooLarge,
)
from openlfr.governance.deployments import TransitionRefused
from openlfr.services.accounts import Principal
from openlfr.services.photo_search import FaceNotChosen
from openlfr.store.db import UNAVAILABLE as DATABASE_UNAVAILABLE
from openlfr.text import first_line

log = logging.getLogger(__name__)

CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
# Swagger UI is served from the static files of the installed fastapi-offline package (works offline); its page
# starts it with an inline script and styles some elements inline.
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'"
)
DOCS_ASSETS = "/docs-assets"


@dataclass(frozen=True)
class UploadRoute:
    """A route that takes photos in a multipart body: its body may hold ``files`` photos plus the form fields."""

    method: str
    path: re.Pattern[str]
    files: int


# Every other route takes at most ``max_json`` bytes, whatever its content type says.
UPLOAD_ROUTES = (
    UploadRoute("POST", re.compile(r"^/api/watchlists/[^/]+/people$"), MAX_FILES),
    UploadRoute("POST", re.compile(r"^/api/search$"), 1),
)
FORM_FIELDS_BYTES = 65_536
# Recorded footage for a retrospective search: one file as the raw body, streamed to disk (``rfr_max_upload_bytes``).
FOOTAGE_ROUTE = ("PUT", re.compile(r"^/api/footage$"))


def body_limit(method: str, path: str, max_json: int, max_upload: int, max_footage: int = 0) -> int:
    """How large a request body the route may receive, decided from its method and path before any is read."""
    if max_footage and method == FOOTAGE_ROUTE[0] and FOOTAGE_ROUTE[1].match(path):
        return max_footage
    for route in UPLOAD_ROUTES:
        if method == route.method and route.path.match(path):
            return route.files * max_upload + FORM_FIELDS_BYTES
    return max_json


class BodyLimit(HttpMiddleware):
    """Refuse request bodies over the route's limit (413) before the application reads them, declared or
    streamed. The upload routes authenticate before they read their body, so nobody anonymous gets one read."""

    def __init__(self, app: ASGIApp, max_json: int, max_upload: int, max_footage: int = 0) -> None:
        super().__init__(app)
        self.max_json, self.max_upload, self.max_footage = max_json, max_upload, max_footage

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope.get("method", ""), scope.get("path", "")
        limit = body_limit(method, path, self.max_json, self.max_upload, self.max_footage)
        declared = next(
            (v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == b"content-length"), None
        )
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            _log_refusal(method, path, limit)
            await _send_json(send, 413, {"detail": f"request body larger than {limit:,} bytes"})
            return
        seen = 0
        started = refused = False

        async def limited_receive() -> Message:
            # Past the limit the 413 goes out at once and the application is told the client has gone: a parser
            # that would turn any error into its own answer (FastAPI's form reading) cannot hide the refusal.
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = True
                    _log_refusal(method, path, limit)
                    if not started:
                        await _send_json(send, 413, {"detail": f"request body larger than {limit:,} bytes"})
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused and not started:
                return  # the 413 has been sent instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, tracking_send)


def _log_refusal(method: str, path: str, limit: int) -> None:
    # A refusal is the server working as meant: an INFO line, never an error (the route's path only, no query).
    log.info("refused %s %s: request body larger than %s bytes", method, path, f"{limit:,}")


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def security_headers(path: str) -> dict[bytes, bytes]:
    """Headers every answer carries: no framing, no sniffing, no referrer, a strict CSP, no caching of data."""
    headers = {
        b"x-content-type-options": b"nosniff",
        b"x-frame-options": b"DENY",
        b"referrer-policy": b"no-referrer",
        b"content-security-policy": (DOCS_CSP if path == "/docs" else CSP).encode(),
    }
    if not path.startswith("/static/"):
        headers[b"cache-control"] = b"no-store"
    return headers


class SecurityHeaders(HttpMiddleware):
    """Adds ``security_headers`` to every answer that passes through it (the outermost of our middleware, so the
    body limit's 413s get them too; the 500 answer, made outside all middleware, adds them itself)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        extra = security_headers(scope.get("path", ""))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in extra.items() if k not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def _wants_json(request: Request) -> bool:
    return answers_json(request.url.path)


def _audit_refusal(request: Request, message: str) -> None:
    """A refused attempt by a logged-in person is itself a human action: it goes in the audit log."""
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:
        return
    with own_write(request, principal) as write:
        write.ctx.audit(write.db, "refused", f"{request.method} {request.url.path}"[:200], {"reason": message[:500]})


HtmlErrorPage = Callable[[Request, int, str], Response]

# The status of each error a person can act on, answered with its sentence: the one place an error's status is
# written (the console's login page reads it here too). Handlers are found along the exception's class hierarchy,
# so the most specific type wins: any other OpenLFRError (a rule, a bad name, a missing watchlist...) is a 400.
PLAIN_ANSWERS: dict[type[Exception], int] = {
    NotFound: 404,
    ModelNotBuilt: 503,  # the server cannot analyse faces until `openlfr models build` has run
    UploadTooLarge: 413,
    UploadRefused: 400,
    LoginThrottled: 429,
    LoginRefused: 401,
    OpenLFRError: 400,
}


def status_of(error: BaseException) -> int:
    """The status ``error`` is answered with: that of its nearest type in ``PLAIN_ANSWERS`` (else 400)."""
    return next((PLAIN_ANSWERS[kind] for kind in type(error).__mro__ if kind in PLAIN_ANSWERS), 400)


# The database did not answer in time (another process holds SQLite's write lock, PostgreSQL is unreachable or
# restarting, no connection free): 503 rather than 500, since the same request may well succeed shortly.
RETRY_AFTER_S = 5
UNAVAILABLE = "the database is busy or cannot be reached right now; try again in a few seconds"


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database did not answer: the driver's error, or the store's refusal caused by it."""
    return isinstance(exc, DATABASE_UNAVAILABLE) or isinstance(exc.__cause__, DATABASE_UNAVAILABLE)


def install_error_answers(app: FastAPI, render_error: HtmlErrorPage) -> None:
    """JSON answers for the API, ``render_error`` pages for the console; each error type has its status."""

    def answer(request: Request, status: int, message: str, extra: dict[str, Any] | None = None) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": message, **(extra or {})}, status_code=status)
        return render_error(request, status, message)

    def unavailable(request: Request, exc: BaseException) -> Response:
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, first_line(exc))
        response = answer(request, 503, UNAVAILABLE)
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    @app.exception_handler(NotAuthenticated)
    async def _not_authenticated(request: Request, exc: NotAuthenticated) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": "log in first"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    async def audited_refusal(request: Request, status: int, message: str) -> Response:
        try:
            await run_in_threadpool(_audit_refusal, request, message)
        except DATABASE_UNAVAILABLE as exc:  # a refusal is only answered once it is in the audit log
            return unavailable(request, exc)
        return answer(request, status, message)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        return await audited_refusal(request, 403, exc.message)

    @app.exception_handler(TransitionRefused)
    async def _refused(request: Request, exc: TransitionRefused) -> Response:
        return await audited_refusal(request, 409, str(exc))

    @app.exception_handler(EnrolmentRefused)
    async def _enrolment(request: Request, exc: EnrolmentRefused) -> Response:
        problems = [{"photo": source, "problem": reason} for source, reason in exc.problems]
        return answer(request, 422, str(exc), {"problems": problems})

    @app.exception_handler(FaceNotChosen)
    async def _choose_a_face(request: Request, exc: FaceNotChosen) -> Response:
        # The faces' boxes go back to the person who sent the photo (the console draws one button per face);
        # they are kept nowhere, as the photo is not.
        faces = [{"face": number, "box": box} for number, box in enumerate(exc.faces, 1)]
        photo = {"width": exc.size[0], "height": exc.size[1]}
        return answer(request, status_of(exc), str(exc), {"faces": faces, "photo": photo})

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> Response:
        # The body limit tells a route whose body it refused that the client has gone (its 413 already sent), as
        # does a client that hangs up mid-upload: nobody is left to answer, and nothing went wrong here.
        log.info(
            "%s %s: the request body ended early (refused, or the client went away)", request.method, request.url.path
        )
        return Response(status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        # Name the fields and what is wrong; never echo the input (it may be a password).
        problems = [
            {"field": ".".join(str(p) for p in err.get("loc", ()) if p != "body"), "problem": err.get("msg", "")}
            for err in exc.errors()
        ]
        return answer(request, 422, "the request is not valid", {"problems": problems})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code != 405:
            response = answer(request, exc.status_code, str(exc.detail))
            response.headers.update(exc.headers or {})
            return response
        # Starlette's Allow names only the first route of the path (one route per method here): all of them.
        allow = ", ".join(allowed_methods(app, request.url.path))
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={"Allow": allow})
        response = answer(request, 405, str(exc.detail))
        response.headers["Allow"] = allow
        return response

    def plain(status: int) -> Callable[[Request, Exception], Awaitable[Response]]:
        async def handler(request: Request, exc: Exception) -> Response:
            if database_unavailable(exc):  # the store's own error for a locked or lost database
                return unavailable(request, exc)
            return answer(request, status, str(exc))

        return handler

    for error_type, status in PLAIN_ANSWERS.items():
        app.add_exception_handler(error_type, plain(status))

    async def _unavailable(request: Request, exc: Exception) -> Response:
        return unavailable(request, exc)

    for error_type in DATABASE_UNAVAILABLE:
        app.add_exception_handler(error_type, _unavailable)

    @app.exception_handler(StatementError)
    async def _store_refused(request: Request, exc: StatementError) -> Response:
        # A value the store's own types refuse (a time outside the calendar in UTC) comes wrapped by SQLAlchemy.
        if isinstance(exc.orig, OpenLFRError):
            return answer(request, status_of(exc.orig), str(exc.orig))
        return await _internal(request, exc)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> Response:
        # Starlette answers this outside every middleware: the security headers are added here. The log keeps
        # the traceback; the person is told nothing of the server's insides.
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        message = "internal error; the server's log has the details"
        try:
            response = answer(request, 500, message)
        except Exception:
            response = JSONResponse({"detail": message}, status_code=500)
        for key, value in security_headers(request.url.path).items():
            response.headers.setdefault(key.decode(), value.decode())
        return response


def _swagger_ui_files() -> str:
    """The folder of Swagger UI's files inside the installed ``fastapi-offline`` package (only its files are used)."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        raise OpenLFRError("the fastapi-offline package (Swagger UI for /docs) is not installed: run `make install`")
    return str(Path(next(iter(spec.submodule_search_locations))) / "static")


def mount_docs(app: FastAPI) -> None:
    """The OpenAPI document (every route's error answers in it: ``api.contract``) and Swagger UI, both behind a
    login; Swagger UI's files served from this machine."""

    install_contract(app)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(_: AnyPrincipal) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    def docs(_: AnyPrincipal) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="OpenLFR API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    app.mount(DOCS_ASSETS, StaticFiles(directory=_swagger_ui_files()), name="docs-assets")


def install_http_plumbing(
    app: FastAPI, settings_max_json: int, settings_max_upload: int, settings_max_footage: int = 0
) -> None:
    """Who asks before anything else (``gate``: the body limit's answer would tell a stranger which routes take
    uploads), body limits before any handler reads a body, and security headers on every answer (added last: the
    outermost middleware, so whatever answers inside it, the gate and the body limit included, gets them)."""
    app.add_middleware(
        BodyLimit, max_json=settings_max_json, max_upload=settings_max_upload, max_footage=settings_max_footage
    )
    app.add_middleware(AuthenticateFirst)
    app.add_middleware(SecurityHeaders)
