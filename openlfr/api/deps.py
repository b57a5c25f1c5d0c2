"""Request plumbing shared by the JSON API and the console: the database session, who is asking, which roles a
route admits, and the one place a person's write is committed with its audit entries.

A route names who may call it by the type of one parameter: ``_: AuditReaderPrincipal`` for a read (the
principal who asks), ``write: OperatorWrite`` for a change (the principal, the request's session and the audit
context; the session commits once the handler has returned, and is rolled back if it raised).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated

import anyio
from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from openlfr.clock import utc_now
from openlfr.governance.roles import Role
from openlfr.runtime.background import RetentionLoop
from openlfr.runtime.live_events import EventBoard
from openlfr.runtime.scheduler import Scheduler
from openlfr.runtime.tiles import TileBoard
from openlfr.services import accounts, throttle
from openlfr.services.accounts import Principal, PrincipalCache
from openlfr.services.context import Context
from openlfr.services.throttle import RefusedAddresses
from openlfr.settings import Settings
from openlfr.store import Store

SESSION_COOKIE = "openlfr_session"
LOGIN_CSRF_COOKIE = "openlfr_login_csrf"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The roles each ``allow`` check admits, read by ``api.contract`` to document which routes may answer 403.
ADMITS: dict[Callable[..., object], frozenset[Role]] = {}
AUTHENTICATED = "authenticated"  # where ``api.gate`` leaves who asks, in the request's state


@dataclass
class ServerState:
    """Everything a request may need of the server, in one place (``app.state.server``)."""

    settings: Settings
    store: Store
    sessions: sessionmaker[Session]
    audit_key: bytes
    tiles: TileBoard  # camera pictures of the pipelines this process runs, for the console
    events: EventBoard  # what the console's event streams show, followed once for all of them
    scheduler: Scheduler | None = None  # the live pipelines, unless left to ``openlfr worker``
    principals: PrincipalCache = field(default_factory=PrincipalCache)
    refused_addresses: RefusedAddresses = field(default_factory=RefusedAddresses)  # too many failed tokens
    retention: RetentionLoop | None = None  # this process's retention loop (its last round), when it runs one


class NotAuthenticated(Exception):
    """Nobody (or an expired session) is asking: the API answers 401, a console page redirects to the login."""


class Forbidden(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def server(request: Request) -> ServerState:
    state: ServerState = request.app.state.server
    return state


async def get_db(request: Request) -> AsyncIterator[Session]:
    """A session per request. Handlers commit what they mean to keep; anything else is rolled back on close.

    Made on the event loop: a new session has no connection yet (the first query takes one, in the handler's
    thread), so opening it needs no trip to a worker thread; closing it does (giving the connection back rolls it
    back, which may wait on the database), shielded from cancellation and outside the pool's thread limit, as
    FastAPI closes a plain generator dependency."""
    db = server(request).sessions()
    try:
        yield db
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(db.close, limiter=anyio.CapacityLimiter(1))


DB = Annotated[Session, Depends(get_db)]


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def credential(request: Request) -> tuple[str, str] | None:
    """The token a request carries and its kind: a bearer token, else the session cookie."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip(), "token"
    cookie = request.cookies.get(SESSION_COOKIE)
    return (cookie, "cookie") if cookie else None


async def authenticate(request: Request) -> Principal | None:
    """Who asks: found already for this request (``api.gate``), remembered (no thread, no database) or looked up
    in a session of its own, closed at once, so no connection is held while the route waits for a worker thread
    or a long answer (an event stream) lasts. A bearer token from an address with too many failures is refused
    (``LoginThrottled``) before it is looked up, and one that matches no session is counted against its address."""
    found: Principal | None = getattr(request.state, AUTHENTICATED, None)
    if found is not None:
        return found
    carried = credential(request)
    if carried is None:
        return None
    state, ip = server(request), client_ip(request)
    bearer = carried[1] == "token"
    if bearer and state.refused_addresses.refuses(ip):
        raise throttle.refusal_of_tokens(state.settings)
    known = state.principals.get(*carried)
    if known is not None:
        return known

    def look_up() -> Principal | None:
        with state.sessions() as db:
            if bearer:
                throttle.check_token_address(db, state.settings, state.refused_addresses, ip, utc_now())
            principal = state.principals.lookup(db, *carried)
            if principal is None and bearer:
                throttle.token_failed(db, state.settings, state.refused_addresses, ip, utc_now())
            return principal

    return await run_in_threadpool(look_up)


def allow(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting only ``roles``; browser sessions must also echo their CSRF token on writes."""
    allowed = frozenset(roles)

    async def check(request: Request) -> Principal:
        principal = await authenticate(request)
        if principal is None:
            raise NotAuthenticated()
        request.state.principal = principal
        if principal.role not in allowed:
            raise Forbidden(f"the {principal.role.value} role cannot do this")
        unsafe = request.method not in SAFE_METHODS and principal.kind == "cookie"
        if unsafe and not accounts.csrf_matches(principal.csrf_token, request.headers.get(CSRF_HEADER)):
            raise Forbidden("missing or wrong CSRF token; reload the page")
        return principal

    ADMITS[check] = allowed
    return check


def context(request: Request, principal: Principal) -> Context:
    state = server(request)
    return Context.of(state.settings, state.audit_key, principal)


@dataclass(frozen=True)
class Write:
    """A person's change: the session it is made in, and the audit context saying who makes it."""

    db: Session
    ctx: Context
    principal: Principal


@contextmanager
def committed(db: Session, ctx: Context, principal: Principal) -> Iterator[Write]:
    """The change and its audit entries commit together when the block ends, and not at all if it raises."""
    yield Write(db, ctx, principal)
    db.commit()


@contextmanager
def own_write(request: Request, principal: Principal) -> Iterator[Write]:
    """A change in a session of its own (a worker thread's, for work done off the event loop after a body was
    read), committed with its audit entries when the block ends, and not at all if it raises."""
    with server(request).sessions() as db, committed(db, context(request, principal), principal) as change:
        yield change


def write(*roles: Role) -> Callable[..., Iterator[Write]]:
    """A dependency admitting only ``roles`` (as ``allow``) to a change committed once the handler returns."""
    check = allow(*roles)

    def unit(request: Request, db: DB, principal: Principal = Depends(check)) -> Iterator[Write]:
        with committed(db, context(request, principal), principal) as change:
            yield change
        server(request).principals.forget()  # the write may have changed who a token is (logout, disable, role)

    return unit


A, AU, OP, AD = Role.ADMIN, Role.AUTHORISER, Role.OPERATOR, Role.AUDITOR
ANY_ROLE = tuple(Role)
DRAFTS = (A, AU, OP)  # who drafts deployments, and so sees the watchlists a draft can name
SEES_ALERTS = (OP, AU)  # biometric images: the people who adjudicate and the authoriser who may hold them
# A photo search is an identification, as adjudicating an alert is: the same people; never the auditor (no
# biometric images) nor the admin (who manages watchlists and accounts, and so does not also search them).
SEARCHES_PHOTOS = SEES_ALERTS
READS_AUDIT = (AD, A)
CANCELS = (AU, A)
ENDS = (OP, AU, A)

# Who asks, for a read (checked before any body is read, holding no database connection afterwards: an event
# stream or an upload being analysed keeps none).
AnyPrincipal = Annotated[Principal, Depends(allow(*ANY_ROLE))]
AdminPrincipal = Annotated[Principal, Depends(allow(A))]
DrafterPrincipal = Annotated[Principal, Depends(allow(*DRAFTS))]
AlertViewerPrincipal = Annotated[Principal, Depends(allow(*SEES_ALERTS))]
PhotoSearcherPrincipal = Annotated[Principal, Depends(allow(*SEARCHES_PHOTOS))]
AuditReaderPrincipal = Annotated[Principal, Depends(allow(*READS_AUDIT))]

# Who changes something. ``scope="function"``: the commit runs before the answer is sent, so no client is told of
# a change that was not kept.
AnyoneWrite = Annotated[Write, Depends(write(*ANY_ROLE), scope="function")]
AdminWrite = Annotated[Write, Depends(write(A), scope="function")]
DrafterWrite = Annotated[Write, Depends(write(*DRAFTS), scope="function")]
AuthoriserWrite = Annotated[Write, Depends(write(AU), scope="function")]
OperatorWrite = Annotated[Write, Depends(write(OP), scope="function")]
CancelWrite = Annotated[Write, Depends(write(*CANCELS), scope="function")]
EndWrite = Annotated[Write, Depends(write(*ENDS), scope="function")]
AuditReaderWrite = Annotated[Write, Depends(write(*READS_AUDIT), scope="function")]
