"""The scheduler of live deployments (``openlfr serve`` and ``openlfr worker``): keeps a ``DeploymentRun`` going for
exactly the deployments that ``may_match`` allows now, and stops each within a second of when it may not."""

from __future__ import annotations

import logging
from typing import Any

from openlfr.services import deployments
from openlfr.services.background import Periodic
from openlfr.services.deployment_runs import POLL_S, DeploymentRun
from openlfr.services.tiles import TileBoard
from openlfr.settings import Settings
from openlfr.store import Store
from openlfr.store.db import StoreError

log = logging.getLogger(__name__)


class Scheduler(Periodic):
    """Keeps exactly the live deployments running. A thread; ``start`` and ``stop`` it."""

    def __init__(self, store: Store, settings: Settings, tiles: TileBoard, poll_s: float = POLL_S) -> None:
        super().__init__("openlfr-scheduler", poll_s)
        self.store, self.settings, self.tiles = store, settings, tiles
        self.runs: dict[int, DeploymentRun] = {}
        self.ended: list[DeploymentRun] = []  # stopped or finished, perhaps still writing what they hold
        self.finished: set[int] = set()  # ran to the end of their sources: not restarted

    def stop(self) -> None:
        super().stop()
        for run in [*self.runs.values(), *self.ended]:
            run.close()
        self.runs.clear()
        self.ended.clear()

    def live_deployments(self) -> set[int]:
        with self.store.session() as db:
            return {row.id for row in deployments.live_deployments(db)}

    def status(self) -> list[dict[str, Any]]:
        """Every run this process has, live or still writing: for ``/health``."""
        return [run.status() for run in [*self.runs.values(), *self.ended]]

    @property
    def healthy(self) -> bool:
        return all(run.healthy for run in [*self.runs.values(), *self.ended])

    def round(self) -> None:
        self.tick()

    def tick(self) -> None:
        self.ended = [run for run in self.ended if run.alive or (run.books is not None and run.books.is_alive())]
        try:
            live = self.live_deployments()
        except StoreError as exc:  # the runs go on; they hold what they cannot write
            log.warning("scheduler: cannot read the deployments: %s", exc)
            return
        for deployment_id in list(self.runs):
            run = self.runs[deployment_id]
            if deployment_id not in live:
                run.note("", "stopped: the deployment may no longer match")
                run.stop()
                del self.runs[deployment_id]
                self.ended.append(run)
            elif not run.alive:
                del self.runs[deployment_id]
                self.ended.append(run)
                self.finished.add(deployment_id)
        for deployment_id in live - set(self.runs) - self.finished:
            run = DeploymentRun(self.store, self.settings, deployment_id, self.tiles)
            run.start()
            self.runs[deployment_id] = run
