"""Accounts, passwords, sessions and login throttling. No web framework here: the routes call these.

Passwords are hashed with argon2id. A session is a random token: the browser holds it in an HttpOnly,
SameSite=Strict cookie, an API client sends it as a bearer token; the database keeps only its SHA-256, so a
copy of the database logs nobody in. Each browser session has its own CSRF token, which every state-changing
request must echo in the ``X-CSRF-Token`` header. Failed logins are counted per user name and address, and per
address (``services.throttle``); past the limit the login is refused (HTTP 429) before the password is even
checked. Each attempt is counted before its password is checked, atomically, so a burst of concurrent guesses
gets no more checks than the limit.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cachetools import TTLCache
from sqlalchemy import Select, bindparam, delete, select
from sqlalchemy.orm import Session

from openlfr.clock import utc, utc_now
from openlfr.errors import AccountError, LoginRefused, NotFound
from openlfr.governance.deployments import TransitionRefused
from openlfr.governance.passwords import password_problem
from openlfr.governance.roles import Role
from openlfr.services import throttle
from openlfr.services.context import Context
from openlfr.settings import Settings
from openlfr.store.governance_models import User, UserSession
from openlfr.store.locks import serialise
from openlfr.text import visible_text

USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,63}$")
ACCOUNT_TABLES = frozenset({"user_sessions", "users"})  # a change to these can change who a token is


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    role: Role
    kind: str  # "cookie" (browser: CSRF applies) or "token" (API client)
    csrf_token: str


def password_hasher(settings: Settings) -> PasswordHasher:
    return PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def validate_username(username: str) -> str:
    name = username.strip().lower()
    if not USERNAME_PATTERN.match(name):
        raise AccountError("a user name is 2-64 characters: lower-case letters, digits, '.', '_' or '-'")
    return name


def validate_password(password: str, *names: str) -> None:
    """Refuse a password that breaks the rule (``governance.passwords``) for someone with these ``names``."""
    problem = password_problem(password, *names)
    if problem is not None:
        raise AccountError(problem)


def create_user(
    session: Session,
    settings: Settings,
    username: str,
    password: str,
    role: Role,
    created_by: str,
    display_name: str = "",
) -> User:
    name = validate_username(username)
    validate_password(password, name, display_name)
    if session.scalar(select(User.id).where(User.username == name)) is not None:
        raise AccountError(f"a user named {name!r} already exists")
    user = User(
        username=name,
        display_name=visible_text(display_name, "the display name", names=True).strip()[:200] or name,
        role=role.value,
        password_hash=password_hasher(settings).hash(password),
        active=True,
        created_by=created_by,
    )
    session.add(user)
    session.flush()
    return user


def set_password(session: Session, settings: Settings, user: User, password: str) -> int:
    """Replace the password and end every session and API token of the account; returns how many ended.

    Whoever knew the old password (or stole a session made with it) is shut out at once, so the new one must
    differ from it.
    """
    validate_password(password, user.username, user.display_name)
    if password_matches(settings, user, password):
        raise AccountError("the new password must differ from the current password")
    user.password_hash = password_hasher(settings).hash(password)
    return end_sessions(session, user)


def end_sessions(session: Session, user: User) -> int:
    """End every session and API token of the account (a disabled account, a new password, a new role)."""
    ended = session.execute(delete(UserSession).where(UserSession.user_id == user.id))
    session.flush()
    return int(getattr(ended, "rowcount", 0) or 0)


def password_matches(settings: Settings, user: User, password: str) -> bool:
    try:
        return password_hasher(settings).verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


_CHECK_SLOTS: dict[int, threading.BoundedSemaphore] = {}
_CHECK_SLOTS_LOCK = threading.Lock()


def _check_slot(settings: Settings) -> threading.BoundedSemaphore:
    """At most ``login_concurrent_checks`` argon2 verifications at once in this process: memory stays bounded
    (each takes ``argon2_memory_kib``) however many logins arrive together; the others wait their turn."""
    with _CHECK_SLOTS_LOCK:
        slot = _CHECK_SLOTS.get(settings.login_concurrent_checks)
        if slot is None:
            slot = _CHECK_SLOTS[settings.login_concurrent_checks] = threading.BoundedSemaphore(
                settings.login_concurrent_checks
            )
        return slot


def check_login(session: Session, settings: Settings, username: str, password: str, ip: str, now: datetime) -> User:
    """The user, if the password is right and the throttle allows.

    The attempt is first recorded as a failure and committed (``throttle.reserve_login``); only then is the
    password checked, outside any transaction, in one of the process's few verification slots. A right password
    removes the name's failures from this address (the caller commits that with the new session); a wrong one
    leaves its failure counted.
    """
    name = username.strip().lower()[:64]
    throttle.reserve_login(session, settings, name, ip, now)
    user = session.scalar(select(User).where(User.username == name))
    stored_hash = user.password_hash if user is not None and user.active else None
    session.commit()  # no connection held during the slow check
    hasher = password_hasher(settings)
    ok = False
    with _check_slot(settings):
        if stored_hash is not None:
            try:
                ok = hasher.verify(stored_hash, password)
            except (VerificationError, InvalidHashError):
                ok = False
        else:
            # Spend the same time on an unknown name as on a wrong password: no user enumeration by timing.
            with contextlib.suppress(VerificationError, InvalidHashError):
                hasher.verify(_dummy_hash(settings), password)
    if not ok or user is None:
        raise LoginRefused("wrong user name or password")
    throttle.login_succeeded(session, name, ip)
    return user


_DUMMY: dict[tuple[int, int, int], str] = {}


def _dummy_hash(settings: Settings) -> str:
    params = (settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism)
    if params not in _DUMMY:
        _DUMMY[params] = password_hasher(settings).hash(secrets.token_hex(16))
    return _DUMMY[params]


def open_session(session: Session, user: User, kind: str, lifetime: timedelta, now: datetime | None = None) -> str:
    """A new session or API token for ``user``; returns the token (shown once, stored only as a hash)."""
    token = secrets.token_urlsafe(32)
    started = now or utc_now()
    session.add(
        UserSession(
            token_hash=token_digest(token),
            user_id=user.id,
            kind=kind,
            csrf_token=secrets.token_urlsafe(24),
            created_at=started,
            expires_at=started + lifetime,
        )
    )
    session.flush()
    return token


@functools.cache
def _principal_query() -> Select[int, str, str, str, datetime]:
    """Asked by every request, so built once: one row of plain columns, no ORM objects to build and track."""
    return (
        select(User.id, User.username, User.role, UserSession.csrf_token, UserSession.expires_at)
        .join(User, User.id == UserSession.user_id)
        .where(
            UserSession.token_hash == bindparam("token_hash"),
            UserSession.kind == bindparam("kind"),
            UserSession.expires_at > bindparam("now", type_=UserSession.expires_at.type),
            User.active.is_(True),
        )
    )


def _lookup(session: Session, token: str, kind: str, now: datetime) -> tuple[Principal, datetime] | None:
    if not token or len(token) > 200:
        return None
    found = {"token_hash": token_digest(token), "kind": kind, "now": now}
    row = session.execute(_principal_query(), found).first()
    if row is None:
        return None
    return Principal(row.id, row.username, Role(row.role), kind, row.csrf_token), utc(row.expires_at)


def resolve(session: Session, token: str, kind: str, now: datetime | None = None) -> Principal | None:
    """Who holds ``token`` now, read from the database (None: nobody, expired, or the account is disabled)."""
    known = _lookup(session, token, kind, now or utc_now())
    return None if known is None else known[0]


class PrincipalCache:
    """Who a token belongs to, remembered for ``ttl_s`` seconds: every request asks, and a lookup costs a
    database trip and a worker thread. Forgotten at once when accounts or sessions change through this process
    (``forget``: logout, disable, role change, password reset) or are announced by another (PostgreSQL
    ``NOTIFY``); another process's change to SQLite is seen within ``ttl_s``. Never remembers a refusal (a token
    made a moment ago by another process works at once) and never past the session's own expiry."""

    def __init__(self, ttl_s: float = 1.0, size: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self._known: TTLCache[tuple[str, str], tuple[Principal, datetime]] = TTLCache(size, ttl_s)
        self._lock = threading.Lock()
        self._generation = 0  # moves with each ``forget``: a lookup that began before one is not remembered

    def get(self, token: str, kind: str, now: datetime | None = None) -> Principal | None:
        with self._lock:
            known = self._known.get((token_digest(token), kind))
        if known is None or known[1] <= (now or utc_now()):
            return None
        return known[0]

    def generation(self) -> int:
        return self._generation

    def remember(self, token: str, kind: str, principal: Principal, expires_at: datetime, since: int) -> None:
        with self._lock:
            if since == self._generation:
                self._known[(token_digest(token), kind)] = (principal, expires_at)

    def lookup(self, session: Session, token: str, kind: str) -> Principal | None:
        """From the database, remembered if nothing was forgotten meanwhile."""
        since = self._generation
        known = _lookup(session, token, kind, utc_now())
        if known is None:
            return None
        self.remember(token, kind, *known, since=since)
        return known[0]

    def forget(self, tables: frozenset[str] = ACCOUNT_TABLES) -> None:
        if tables & ACCOUNT_TABLES:
            with self._lock:
                self._generation += 1
                self._known.clear()


def close_session(session: Session, token: str) -> None:
    session.execute(delete(UserSession).where(UserSession.token_hash == token_digest(token)))


def csrf_matches(expected: str, given: str | None) -> bool:
    return given is not None and secrets.compare_digest(expected.encode(), given.encode())


# ----- audited changes to accounts: `openlfr users ...` and /api/users call these, then commit -----


def find_account(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None:
        raise NotFound(f"no user named {username!r}")
    return user


def create_account(
    session: Session, ctx: Context, username: str, password: str, role: Role, display_name: str = ""
) -> User:
    user = create_user(session, ctx.settings, username, password, role, ctx.actor, display_name)
    ctx.audit(session, "user.create", f"user:{user.username}", {"role": user.role})
    return user


def keep_an_administrator(session: Session, ctx: Context, user: User, stays_admin: bool) -> None:
    """The server keeps an active administrator: an administrator can be disabled or given another role only
    while another one stays active, and only by an administrator still active (or at the command line).

    The rule reads every administrator, so no compare-and-set on one row can hold it: changes to administrators
    take turns (``serialise``), each judged on what the one before committed. Two administrators disabling each
    other at once: the first wins, the second is refused."""
    serialise(session, "administrators")
    active = set(session.scalars(select(User.username).where(User.role == Role.ADMIN.value, User.active.is_(True))))
    if ctx.as_role is Role.ADMIN and ctx.actor not in active:
        raise TransitionRefused("your account is no longer an active administrator")
    if not stays_admin and active == {user.username}:
        raise TransitionRefused(f"{user.username} is the last active administrator; make another one first")


def disable(session: Session, ctx: Context, user: User) -> int:
    """The account cannot log in, and its sessions and API tokens end now; returns how many ended."""
    keep_an_administrator(session, ctx, user, stays_admin=False)
    user.active = False
    ended = end_sessions(session, user)
    ctx.audit(session, "user.disable", f"user:{user.username}", {"sessions_ended": ended})
    return ended


def enable(session: Session, ctx: Context, user: User) -> None:
    user.active = True
    ctx.audit(session, "user.enable", f"user:{user.username}", {})


def change_role(session: Session, ctx: Context, user: User, role: Role) -> tuple[str, int]:
    """A new role; the account's sessions end (they carry the role they were opened with). Returns the old role
    and how many sessions ended."""
    keep_an_administrator(session, ctx, user, stays_admin=role is Role.ADMIN)
    before, user.role = user.role, role.value
    ended = end_sessions(session, user)
    ctx.audit(session, "user.role", f"user:{user.username}", {"from": before, "to": user.role, "sessions_ended": ended})
    return before, ended


def reset_password(session: Session, ctx: Context, user: User, password: str) -> int:
    ended = set_password(session, ctx.settings, user, password)
    ctx.audit(session, "user.password_reset", f"user:{user.username}", {"sessions_ended": ended})
    return ended


def issue_token(session: Session, ctx: Context, user: User, days: float) -> str:
    """An API token for the account, printed once and stored only as a hash."""
    if not user.active:
        raise AccountError(f"{user.username} is disabled: `openlfr users enable {user.username}` first")
    token = open_session(session, user, "token", timedelta(days=days))
    ctx.audit(session, "user.token", f"user:{user.username}", {"days": days})
    return token
