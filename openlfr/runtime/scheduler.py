"""The scheduler of live deployments (``openlfr serve`` and ``openlfr worker``): keeps a ``DeploymentRun`` going for
exactly the deployments that ``may_match`` allows now, and stops each within a second of when it may not."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Any

from openlfr.runtime.background import Periodic
from openlfr.runtime.deployment_run import POLL_S, DeploymentRun, RunStatus
from openlfr.runtime.supervisor import RunState
from openlfr.runtime.tiles import TileBoard
from openlfr.services import deployments
from openlfr.settings import Settings
from openlfr.store import Store
from openlfr.store.db import StoreError
from openlfr.store.progress_models import CameraProgress, claim, expire_lease

log = logging.getLogger(__name__)


class Scheduler(Periodic):
    """Keeps exactly the live deployments running. A thread; ``start`` and ``stop`` it."""

    def __init__(
        self, store: Store, settings: Settings, tiles: TileBoard, poll_s: float = POLL_S, count_alerts: bool = True
    ) -> None:
        super().__init__("openlfr-scheduler", poll_s)
        self.store, self.settings, self.tiles = store, settings, tiles
        self.count_alerts = count_alerts  # False in serve: its event board counts every committed alert
        # Who holds leases: unique per process, and says where it runs (for the operator).
        self.machine = (settings.worker_name or socket.gethostname()).replace(":", "-")
        self.holder = f"{self.machine}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:200]
        self.runs: dict[tuple[int, str], DeploymentRun] = {}
        self.ended: list[DeploymentRun] = []  # stopped or finished, perhaps still writing what they hold
        self.finished: set[tuple[int, str]] = set()  # ran to the end of their sources: not restarted

    def stop(self) -> None:
        super().stop()
        for run in [*self.runs.values(), *self.ended]:
            run.close()
        self.runs.clear()
        self.ended.clear()

    def live_deployments(self) -> set[int]:
        with self.store.session() as db:
            return {row.id for row in deployments.live_deployments(db)}

    def live_cameras(self) -> set[tuple[int, str]]:
        with self.store.session() as db:
            return {(row.id, str(camera["name"])) for row in deployments.live_deployments(db) for camera in row.cameras}

    def _holder_died(self, deployment_id: int, camera: str) -> bool:
        """Whether the camera's holder is a process of this machine that is gone (its lease then ends now: a
        restarted server takes its cameras back at once instead of waiting the lease out)."""
        with self.store.session() as db:
            row = db.get(CameraProgress, (deployment_id, camera))
            holder = row.held_by if row is not None else None
            if holder is None:
                return False
            host, _, rest = holder.partition(":")
            pid_text = rest.partition(":")[0]
            if host != self.machine or not pid_text.isdigit() or holder == self.holder:
                return False
            try:
                os.kill(int(pid_text), 0)
                return False  # alive (or not ours to judge)
            except ProcessLookupError:
                pass
            except PermissionError:
                return False
            expire_lease(db, deployment_id, camera, holder)
            log.warning("scheduler: camera %s of deployment %d: its holder %s is gone", camera, deployment_id, holder)
            return True

    def status(self) -> list[RunStatus]:
        """Every run this process has, live or still writing."""
        return [run.status() for run in [*self.runs.values(), *self.ended]]

    def report(self) -> list[dict[str, Any]]:
        """``status`` as JSON objects, for ``/health`` and ``/metrics``."""
        return [status.as_dict() for status in self.status()]

    @property
    def healthy(self) -> bool:
        return all(run.healthy for run in [*self.runs.values(), *self.ended])

    def round(self) -> None:
        try:
            live = self.live_cameras()
        except StoreError as exc:  # the runs go on; they hold what they cannot write
            log.warning("scheduler: cannot read the deployments: %s", exc)
            return
        # A run that gave up (the same failure again and again) stays in view while its deployment could run.
        self.ended = [
            run
            for run in self.ended
            if run.alive
            or run.books.alive
            or (run.state is RunState.FAILED and (run.deployment_id, run.camera) in live)
        ]
        for key in list(self.runs):
            run = self.runs[key]
            if key not in live:
                run.note("", "stopped: the deployment may no longer match")
                run.stop()
                del self.runs[key]
                self.ended.append(run)
            elif not run.alive or run.state is RunState.STOPPED:  # ended, or gave its camera up (lease)
                del self.runs[key]
                self.ended.append(run)
                if run.source_ended or run.state is RunState.FAILED:  # not started again by this process
                    self.finished.add(key)
        took_unheld = False
        for key in sorted(live - set(self.runs) - self.finished):
            deployment_id, camera = key
            if any(r.deployment_id == deployment_id and r.camera == camera and r.alive for r in self.ended):
                continue  # still writing what it holds
            try:
                with self.store.session() as db:
                    # One camera nobody holds per round, so processes on one database share a new deployment's
                    # cameras (their rounds interleave); a camera whose holder's lease ran out is taken at once.
                    row = db.get(CameraProgress, key)
                    unheld = row is None or row.held_by is None
                    if unheld and took_unheld:
                        continue
                    held = claim(db, deployment_id, camera, self.holder, float(self.settings.camera_lease_seconds))
                    took_unheld = took_unheld or (held and unheld)
            except StoreError as exc:
                log.warning("scheduler: cannot take camera %s of deployment %d: %s", camera, deployment_id, exc)
                continue
            if not held and self._holder_died(deployment_id, camera):
                with self.store.session() as db:
                    held = claim(db, deployment_id, camera, self.holder, float(self.settings.camera_lease_seconds))
            if not held:
                continue  # another process runs it
            run = DeploymentRun(
                self.store, self.settings, deployment_id, self.tiles, camera, self.holder, self.count_alerts
            )
            run.start()
            self.runs[key] = run
