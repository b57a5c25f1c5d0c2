"""Retention enforced by the server: a loop that destroys what is due, and the same work on demand."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from openlfr.api import services
from openlfr.api.audit_log import audit_key
from openlfr.governance.deployments import now_utc
from openlfr.governance.retention import RetentionPolicy
from openlfr.settings import Settings
from openlfr.store import Store
from openlfr.store.governance_models import LoginFailure, UserSession

log = logging.getLogger(__name__)


def policy_of(settings: Settings) -> RetentionPolicy:
    return RetentionPolicy.from_seconds(
        settings.snapshot_retention_seconds,
        settings.probe_retention_seconds,
        settings.expired_entry_retention_seconds,
    )


def enforce_once(store: Store, settings: Settings) -> services.PurgeReport:
    """Close finished deployment windows and purge what retention says is due, in one transaction."""
    ctx = services.Context.system(settings, audit_key(settings))
    with store.session() as db:
        services.close_finished(db, ctx)
        report = services.enforce_retention(db, ctx, policy_of(settings))
        forget_stale_logins(db, settings)
        return report


def forget_stale_logins(db: Session, settings: Settings) -> None:
    """Expired sessions and tokens, and failed logins older than the throttling window, serve no purpose."""
    moment = now_utc()
    db.execute(delete(UserSession).where(UserSession.expires_at <= moment))
    db.execute(delete(LoginFailure).where(LoginFailure.at < moment - timedelta(seconds=settings.login_window_seconds)))


class RetentionLoop:
    """Runs ``enforce_once`` every ``interval`` seconds on a daemon thread until stopped."""

    def __init__(self, store: Store, settings: Settings, interval: float) -> None:
        self.store, self.settings, self.interval = store, settings, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="openlfr-retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                report = enforce_once(self.store, self.settings)
                if report.anything:
                    log.info("retention: %s", report.summary())
            except Exception:  # keep enforcing on the next round; the failure is logged, not swallowed
                log.exception("retention round failed")
            self._stop.wait(self.interval)
