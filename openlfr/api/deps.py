"""Request plumbing shared by the JSON API and the console: the database session, who is asking, and the
role check every endpoint declares with ``allow(...)``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from openlfr.api import auth
from openlfr.api.auth import Principal
from openlfr.api.services import Context
from openlfr.governance.roles import Role
from openlfr.settings import Settings
from openlfr.store import Store

SESSION_COOKIE = "openlfr_session"
LOGIN_CSRF_COOKIE = "openlfr_login_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class ServerState:
    settings: Settings
    store: Store
    sessions: sessionmaker[Session]
    audit_key: bytes


class NotAuthenticated(Exception):
    """Nobody (or an expired session) is asking: the API answers 401, a console page redirects to the login."""


class Forbidden(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def server(request: Request) -> ServerState:
    state: ServerState = request.app.state.server
    return state


def get_db(request: Request) -> Iterator[Session]:
    """A session per request. Handlers commit what they mean to keep; anything else is rolled back on close."""
    db = server(request).sessions()
    try:
        yield db
    finally:
        db.close()


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def authenticate(request: Request, db: Session) -> Principal | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return auth.resolve(db, header[7:].strip(), "token")
    cookie = request.cookies.get(SESSION_COOKIE)
    return auth.resolve(db, cookie, "cookie") if cookie else None


def allow(*roles: Role) -> Callable[..., Principal]:
    """A dependency admitting only ``roles``; browser sessions must also echo their CSRF token on writes."""
    allowed = frozenset(roles)

    def check(request: Request, db: Session = Depends(get_db)) -> Principal:
        principal = authenticate(request, db)
        if principal is None:
            raise NotAuthenticated()
        request.state.principal = principal
        if principal.role not in allowed:
            raise Forbidden(f"the {principal.role.value} role cannot do this")
        unsafe = request.method not in SAFE_METHODS and principal.kind == "cookie"
        if unsafe and not auth.csrf_matches(principal.csrf_token, request.headers.get(CSRF_HEADER)):
            raise Forbidden("missing or wrong CSRF token; reload the page")
        return principal

    check.allowed_roles = allowed  # type: ignore[attr-defined]
    return check


ANY_ROLE = tuple(Role)


def context(request: Request, principal: Principal) -> Context:
    state = server(request)
    return Context.of(state.settings, state.audit_key, principal)
