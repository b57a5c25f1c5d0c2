"""Work the server repeats on a daemon thread (retention, the deployment scheduler, listing watches) until stopped."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime

from openlfr.clock import utc_now
from openlfr.services.retention import enforce_once
from openlfr.settings import Settings
from openlfr.store import Store
from openlfr.text import first_line
from openlfr.urls import redact_text

log = logging.getLogger(__name__)


class Periodic:
    """Calls ``round`` every ``interval`` seconds until ``stop``; a failed round is logged, and the next one runs."""

    def __init__(self, name: str, interval: float, join_timeout_s: float = 20.0) -> None:
        self.interval, self.join_timeout_s = interval, join_timeout_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def round(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.join_timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.round()
            except Exception:  # keep going on the next round; the failure is logged, not swallowed
                log.exception("%s: round failed", self._thread.name)
            self._stop.wait(self.interval)


@dataclass(frozen=True)
class RetentionRound:
    """One round of this process's retention loop: when it started, what it did, or why it failed."""

    at: datetime
    done: str  # what it destroyed, or that nothing was due ("" when it failed)
    error: str | None = None


class RetentionLoop(Periodic):
    """Runs ``enforce_once`` every ``interval`` seconds on a daemon thread until stopped. Its last round is kept in
    memory (``last``) for the system page: a round that finds nothing due writes no audit entry, so the audit log
    cannot say when retention last ran."""

    def __init__(self, store: Store, settings: Settings, interval: float) -> None:
        super().__init__("openlfr-retention", interval, join_timeout_s=10)
        self.store, self.settings = store, settings
        self.last: RetentionRound | None = None

    def round(self) -> None:
        started = utc_now()
        try:
            report = enforce_once(self.store, self.settings)
        except Exception as exc:
            self.last = RetentionRound(started, "", redact_text(first_line(exc))[:300])
            raise
        self.last = RetentionRound(started, report.summary() if report.anything else "nothing was due")
        if report.anything:
            log.info("retention: %s", report.summary())
