"""``MatchGuard`` and ``GuardedGallery``: ``may_match`` enforced at the point of comparison.

The server starts a pipeline only while its deployment may match and stops it when that ends; the guard is the
second line: the gallery a pipeline gets refuses every search (returns no candidates, so nothing can alert) the
moment ``may_match`` says no — a cancelled deployment, a closed window, a destroyed snapshot — whatever the
pipeline itself does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np

from openlfr.clock import utc_now
from openlfr.governance.deployments import DeploymentFacts, MatchPermission, may_match


class MatchGuard:
    """Answers ``may_match`` for one deployment, re-reading it at most every ``refresh_s`` seconds.

    The window is checked against the clock on every call; a change of state (cancelled, ended) is seen within
    ``refresh_s``. If the deployment cannot be read, the guard goes on with the facts it read last for at most
    ``stale_s`` seconds (a database restart or a locked file must not blind a deployment; nobody can cancel
    through a database that does not answer either), then refuses until it reads them again. ``load`` returns
    the deployment readable without its session (a detached row, a plain record) or None.
    """

    def __init__(
        self,
        load: Callable[[], DeploymentFacts | None],
        refresh_s: float = 1.0,
        clock: Callable[[], datetime] = utc_now,
        stale_s: float = 15.0,
    ) -> None:
        self._load, self._refresh_s, self._clock, self._stale_s = load, refresh_s, clock, stale_s
        self._lock = threading.Lock()
        self._facts: DeploymentFacts | None = None
        self._read_at = -1e9
        self._good_at = -1e9  # when the facts were last read
        self.refusals = 0

    def _current(self) -> DeploymentFacts | None:
        with self._lock:
            if time.monotonic() - self._read_at >= self._refresh_s:
                try:
                    self._facts = self._load()
                    self._good_at = time.monotonic()
                except Exception:  # unreadable: stale facts for a short while, then refuse
                    if time.monotonic() - self._good_at > self._stale_s:
                        self._facts = None
                self._read_at = time.monotonic()
            return self._facts

    def permission(self) -> MatchPermission:
        answer = may_match(self._current(), self._clock())
        if not answer.allowed:
            self.refusals += 1
        return answer

    def __bool__(self) -> bool:
        return self.permission().allowed


class GuardedGallery:
    """A gallery that asks the guard before every search; refused searches find nobody."""

    def __init__(self, gallery: Any, guard: MatchGuard) -> None:
        self._gallery, self._guard = gallery, guard

    def __getattr__(self, name: str) -> Any:
        # size, model_id, person_ids...: facts about the watchlist, not comparisons.
        return getattr(self._gallery, name)

    def search(self, probes: np.ndarray, k: int = 5, **options: Any) -> list[list[Any]]:
        if not self._guard:
            return [[] for _ in range(len(np.atleast_2d(probes)))]
        result: list[list[Any]] = self._gallery.search(probes, k, **options)
        return result

    def best_scores(self, probes: np.ndarray, **options: Any) -> np.ndarray:
        if not self._guard:
            return np.zeros(len(np.atleast_2d(probes)))
        return np.asarray(self._gallery.best_scores(probes, **options))

    def top_references(self, probes: np.ndarray, m: int, **options: Any) -> tuple[np.ndarray, np.ndarray]:
        if not self._guard:
            rows = len(np.atleast_2d(probes))
            return np.zeros((rows, 0), np.int64), np.zeros((rows, 0), np.float32)
        result: tuple[np.ndarray, np.ndarray] = self._gallery.top_references(probes, m, **options)
        return result
