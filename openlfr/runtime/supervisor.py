"""A run's supervisor: its pipeline started, and started again with backoff when it fails, for as long as the
window is open; given up when it fails the same way ``pipeline_max_same_failures`` times in a row (a source that
cannot be read: restarting would only flap). Each failure and restart is logged, noted on the deployment's page
and audited (actor ``system``) through the run's books; the run's state is a :class:`RunState`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from enum import StrEnum

from openlfr.runtime.books import Books
from openlfr.runtime.camera_health import CameraStatus, CameraWatch
from openlfr.urls import redact_text

log = logging.getLogger(__name__)

RESTART_FIRST_S = 2.0  # the first restart of a failed pipeline waits this long; doubled up to RESTART_MAX_S
RESTART_MAX_S = 60.0


class RunState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    FINISHED = "finished"  # its sources ended
    STOPPED = "stopped"  # told to stop (the window closed, the camera's lease went elsewhere, shut down)
    FAILED = "failed"  # given up: the same failure again and again


class Supervisor:
    """Runs ``run_once`` (one pipeline from start to end: None, or why it failed) until it need not run again."""

    def __init__(
        self,
        deployment_id: int,
        max_same_failures: int,
        books: Books,
        cameras: CameraWatch,
        stopping: threading.Event,
        window_open: Callable[[], bool],
    ) -> None:
        self.deployment_id, self.max_same_failures = deployment_id, max_same_failures
        self.books, self.cameras, self.stopping, self.window_open = books, cameras, stopping, window_open
        self.state = RunState.STARTING
        self.restarts = 0
        self.last_failure: str | None = None
        self.reloading = False  # the pipeline was stopped to be rebuilt at once (a listing ended): no failure

    def run(self, run_once: Callable[[], str | None]) -> None:
        delay = RESTART_FIRST_S
        same, previous = 0, None  # failures in a row with the same reason
        try:
            while not self.stopping.is_set():
                failure = run_once()
                failure = None if failure is None else redact_text(failure)  # shown on /health, logged, audited
                if self.reloading and not self.stopping.is_set():
                    continue
                if failure is None or self.stopping.is_set() or not self.window_open():
                    break
                same, previous = (same + 1 if failure == previous else 1), failure
                if same >= self.max_same_failures:
                    self._give_up(failure, same)
                    break
                self._restart_after(failure, delay)
                if self.stopping.wait(delay):
                    break
                delay = min(delay * 2, RESTART_MAX_S)
        finally:
            if self.state is not RunState.FAILED:
                self.state = RunState.STOPPED if self.stopping.is_set() else RunState.FINISHED

    def _restart_after(self, failure: str, delay: float) -> None:
        self.restarts += 1
        self.state, self.last_failure = RunState.RESTARTING, failure
        log.warning(
            "deployment %d: the pipeline failed (%s); restart %d in %.0f s",
            self.deployment_id,
            failure,
            self.restarts,
            delay,
        )
        self.books.note("", f"the pipeline failed ({failure}); restart {self.restarts} in {delay:.0f} s")
        self.books.audit("deployment.pipeline_restart", {"restart": self.restarts, "reason": failure, "after_s": delay})
        self.cameras.all(CameraStatus.RECONNECTING, f"the pipeline failed ({failure}); restart in {delay:.0f} s")

    def _give_up(self, failure: str, times: int) -> None:
        """The run stops, says so on the page and in the audit log, and stays failed (``/health``: degraded) until
        the deployment is changed or this process starts again."""
        self.state, self.last_failure = RunState.FAILED, failure
        log.error(
            "deployment %d: the pipeline failed the same way %d times (%s): stopped", self.deployment_id, times, failure
        )
        self.books.note(
            "", f"stopped: the pipeline failed the same way {times} times in a row ({failure}); not restarted"
        )
        self.books.audit(
            "deployment.pipeline_failed", {"failures": times, "reason": failure, "restarts": self.restarts}
        )
        self.cameras.all(CameraStatus.FAILED, f"given up after {times} failures in a row: {failure}")
