"""Work the server repeats on a daemon thread (retention, the deployment scheduler) until stopped."""

from __future__ import annotations

import logging
import threading

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
