"""Guessing throttled: failed logins and failed bearer tokens, counted in the database (every server process
sees the same counts) over a sliding window.

A login is refused (HTTP 429), before its password is checked, past ``login_max_failures`` for its name from its
address, ``login_ip_max_failures`` from its address whatever the names, or ``login_name_max_failures`` for its name
from all addresses: a stranger's five guesses lock the name only at the stranger's address, and the real user logs
in from their own. A failed bearer token counts against its address as a failed login does; past the same limit
the address's tokens are refused (429) before they are looked up, a right one included, and the address is
remembered in this process so that a refused request costs no database trip. Failed tokens are logged by address,
never with the token.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from cachetools import LRUCache
from sqlalchemy import delete, func, select
from sqlalchemy import text as sa_text
from sqlalchemy.orm import Session

from openlfr.clock import utc
from openlfr.errors import LoginThrottled
from openlfr.settings import Settings
from openlfr.store.governance_models import LoginFailure

log = logging.getLogger(__name__)

# The name a failed bearer token is counted under: no user name can be this (accounts.USERNAME_PATTERN).
BEARER_TOKEN = "(bearer token)"


def _failures(session: Session, since: datetime, *conditions: Any) -> int:
    count = session.scalar(select(func.count()).select_from(LoginFailure).where(LoginFailure.at >= since, *conditions))
    return int(count or 0)


def _lock_key(kind: str, value: str) -> int:
    """A 64-bit PostgreSQL advisory-lock key for a user name or an address."""
    return int.from_bytes(hashlib.sha256(f"openlfr-login:{kind}:{value}".encode()).digest()[:8], "big", signed=True)


def _refusal(settings: Settings, what: str = "failed logins") -> LoginThrottled:
    minutes = max(1, round(settings.login_window_seconds / 60))
    return LoginThrottled(f"too many {what}; try again in {minutes} minutes")


def reserve_login(session: Session, settings: Settings, name: str, ip: str, now: datetime) -> None:
    """Count this attempt as a failure before its password is checked, and commit that: concurrent attempts
    each see every earlier one, so at most the limit are ever checked. Refused (and nothing kept) past a limit.

    The count and the insert are one step: on SQLite the transaction takes the write lock first (``BEGIN
    IMMEDIATE``), on PostgreSQL advisory locks on the name and the address serialise attempts for either."""
    if session.in_transaction():
        session.commit()
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        for kind, value in (("name", name), ("ip", ip)):
            session.execute(sa_text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(kind, value)})
    since = utc(now) - timedelta(seconds=settings.login_window_seconds)
    by_name, by_ip = LoginFailure.username == name, LoginFailure.ip == ip
    if (
        _failures(session, since, by_name, by_ip) >= settings.login_max_failures
        or _failures(session, since, by_ip) >= settings.login_ip_max_failures
        or _failures(session, since, by_name) >= settings.login_name_max_failures
    ):
        session.rollback()
        raise _refusal(settings)
    session.add(LoginFailure(username=name, ip=ip, at=utc(now)))
    session.commit()


def login_succeeded(session: Session, name: str, ip: str) -> None:
    """Forget the name's failures from this address (the caller commits): those from elsewhere still count."""
    session.execute(delete(LoginFailure).where(LoginFailure.username == name, LoginFailure.ip == ip))


class RefusedAddresses:
    """Addresses whose bearer tokens are refused until a moment, remembered by this process (bounded)."""

    def __init__(self, size: int = 10_000) -> None:
        self._until: LRUCache[str, float] = LRUCache(size)
        self._lock = threading.Lock()

    def refuses(self, ip: str) -> bool:
        with self._lock:
            until = self._until.get(ip)
        return until is not None and until > time.monotonic()

    def refuse(self, ip: str, seconds: float) -> None:
        with self._lock:
            self._until[ip] = time.monotonic() + seconds


def refusal_of_tokens(settings: Settings) -> LoginThrottled:
    return _refusal(settings, "failed logins or tokens from this address")


def check_token_address(
    session: Session, settings: Settings, refused: RefusedAddresses, ip: str, now: datetime
) -> None:
    """Refuse (``LoginThrottled``) a bearer token from an address past its limit of failures, before it is looked up."""
    since = utc(now) - timedelta(seconds=settings.login_window_seconds)
    if refused.refuses(ip) or _failures(session, since, LoginFailure.ip == ip) >= settings.login_ip_max_failures:
        refused.refuse(ip, settings.login_window_seconds)
        raise refusal_of_tokens(settings)


def token_failed(session: Session, settings: Settings, refused: RefusedAddresses, ip: str, now: datetime) -> None:
    """Count and log a bearer token that matched no session (its address only: the token is a secret, even a
    wrong one may be a right one mistyped); the address is refused once it reaches the limit."""
    session.add(LoginFailure(username=BEARER_TOKEN, ip=ip, at=utc(now)))
    session.commit()
    since = utc(now) - timedelta(seconds=settings.login_window_seconds)
    count, limit = _failures(session, since, LoginFailure.ip == ip), settings.login_ip_max_failures
    log.warning(
        "bearer token refused for %s: %d failed logins or tokens from it in %d s (limit %d)",
        ip,
        count,
        settings.login_window_seconds,
        limit,
    )
    if count >= limit:
        refused.refuse(ip, settings.login_window_seconds)
        log.warning("bearer tokens from %s refused for %d s: too many failures", ip, settings.login_window_seconds)
