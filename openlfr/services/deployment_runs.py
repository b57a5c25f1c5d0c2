"""Running the live pipeline for deployments: the ``Scheduler`` starts a ``DeploymentRun`` for each deployment
that ``may_match`` allows and stops it when that stops being true.

Matching stays inside an authorised window at three places: the scheduler starts runs only for live
deployments and stops them within a second of a cancellation or the end of the window; the pipeline's runner
asks a ``MatchGuard`` (``may_match`` on the deployment, re-read every second) every half second and its
camera processes embed nobody while it says no; and those processes also refuse to match past the window's
end by their own clock. The gallery is built from the deployment's snapshot (what the authoriser approved),
never from the live watchlist.

Alerts are committed to the database with their deployment (the pipeline's dispatcher) before anything else
sees them; the console's event stream finds them there. Counts (frames, faces seen, tracks, alerts) are added
to the deployment's record every few seconds. Camera tiles are rendered in memory for the console.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import update

from openlfr.governance.deployments import GovernanceError
from openlfr.governance.guard import MatchGuard
from openlfr.services import deployments
from openlfr.services.background import Periodic
from openlfr.services.live import CameraDefaults, LivePipeline, build_pipeline, camera_of, snapshot_watchlist
from openlfr.services.tiles import TileBoard, TileFace
from openlfr.settings import Settings
from openlfr.store import Store
from openlfr.store.governance_models import Deployment
from openlfr.stream.runner import CameraState
from openlfr.stream.worker import FrameView
from openlfr.vision.types import Box

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often the scheduler looks at the deployments
FLUSH_S = 2.0  # how often a camera adds its counts to the deployment's record
TILE_INTERVAL_S = 0.5  # a camera picture for the console this often


def _load_facts(store: Store, deployment_id: int) -> Callable[[], Deployment | None]:
    def load() -> Deployment | None:
        with store.session() as db:
            return db.get(Deployment, deployment_id)

    return load


class DeploymentRun:
    """One deployment's cameras, analysed by the live pipeline's runner (one process per camera), until stopped
    or every camera has finished. Alerts are committed with their deployment by the pipeline's dispatcher."""

    def __init__(self, store: Store, settings: Settings, deployment_id: int, tiles: TileBoard) -> None:
        self.store, self.settings, self.deployment_id, self.tiles = store, settings, deployment_id, tiles
        self.guard = MatchGuard(_load_facts(store, deployment_id))
        self.thread: threading.Thread | None = None
        self.pipeline: LivePipeline | None = None
        self.runner: Any = None
        self.notes: dict[str, str] = {}
        self._flushed: dict[str, dict[str, int]] = {}
        self._last_flush = 0.0
        self._lock = threading.Lock()

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self) -> None:
        self.prepare()
        assert self.pipeline is not None
        for camera in self.pipeline.runner.cameras:
            self.note(camera.name, "starting")
        self.thread = threading.Thread(target=self._run, name=f"openlfr-deployment-{self.deployment_id}", daemon=True)
        self.thread.start()

    def prepare(self) -> LivePipeline:
        """Build the deployment's pipeline (nothing runs yet): its snapshot, its cameras, the stream settings."""
        snapshot = snapshot_watchlist(self.store, self.deployment_id, self.settings)
        facts = self.guard.permission()
        if not facts.allowed:
            raise GovernanceError(f"deployment {self.deployment_id} may not match: {facts.reason}")
        with self.store.session() as db:
            row = db.get(Deployment, self.deployment_id)
            assert row is not None
            ends_at = row.ends_at
        cameras = [camera_of(record, CameraDefaults()) for record in snapshot.cameras]
        # A file stands in for a camera (tests, demonstrations): play it at its own pace, as a camera would.
        self.pipeline = build_pipeline(
            self.store,
            self.settings,
            snapshot,
            cameras,
            deployment_id=self.deployment_id,
            # Asked every half second in this process; the workers also stop matching at the window's end.
            may_match=self.guard.__bool__,
            match_until=ends_at,
            realtime=True,
            retry_for_window=True,
            on_error=self.note,
            on_notice=self.note,
            on_stats=self._on_stats,
            on_view=self._on_view,
            view_interval_s=TILE_INTERVAL_S,
        )
        self.runner = self.pipeline.runner
        return self.pipeline

    def _run(self) -> None:
        try:
            summary = self.runner.run()
            for name, state in summary.cameras.items():
                self._flush(name, state.counters.as_dict(), force=True)
                if state.error is None and not self.runner.stopped:
                    self.note(name, "the source ended")
        except Exception as exc:  # the operator sees why; the scheduler does not restart it blindly
            log.warning("deployment %d pipeline failed: %s", self.deployment_id, exc)
            self.note("", f"the pipeline failed: {exc}")

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop()
        if self.thread is not None:
            self.thread.join(timeout=30)
        self.tiles.clear(self.deployment_id)

    def note(self, camera: str, message: str) -> None:
        """What the operator should know about a camera, on the deployment's page."""
        text = message if message.startswith("camera") or not camera else f"camera {camera}: {message}"
        with self._lock:
            self.notes[camera] = text
            joined = "; ".join(self.notes.values())
        with self.store.session() as db:
            db.execute(
                update(Deployment).where(Deployment.id == self.deployment_id).values(pipeline_note=joined[:2000])
            )

    def _on_view(self, view: FrameView) -> None:
        if not self.tiles.wants(self.deployment_id, view.camera):
            return
        scale = float(view.scale)
        faces = [
            TileFace(
                Box(
                    round(b.box.left * scale),
                    round(b.box.top * scale),
                    round(b.box.right * scale),
                    round(b.box.bottom * scale),
                ),
                bool(b.alerted),
                b.label,
            )
            for b in view.boxes
        ]
        self.tiles.publish(self.deployment_id, view.camera, view.rgb, faces)

    def _on_stats(self, states: dict[str, CameraState]) -> None:
        for name, state in states.items():
            if state.ready and self.notes.get(name, "").endswith("starting"):
                self.note(name, "running")
        if time.monotonic() - self._last_flush < FLUSH_S:
            return
        self._last_flush = time.monotonic()
        for name, state in states.items():
            self._flush(name, state.counters.as_dict())

    def _flush(self, camera: str, counters: dict[str, int], force: bool = False) -> None:
        """Add what a camera counted since the last flush to the deployment's record (the only trace of faces)."""
        keys = ("decoded", "faces_seen", "tracks", "alerts")
        before = self._flushed.get(camera, dict.fromkeys(keys, 0))
        delta = {key: counters.get(key, 0) - before[key] for key in keys}
        if any(delta.values()) or force:
            with self.store.session() as db:
                deployments.add_counts(
                    db, self.deployment_id, delta["decoded"], delta["faces_seen"], delta["tracks"], delta["alerts"]
                )
            self._flushed[camera] = {key: counters.get(key, 0) for key in keys}


class Scheduler(Periodic):
    """Keeps exactly the live deployments running. A thread; ``start`` and ``stop`` it."""

    def __init__(self, store: Store, settings: Settings, tiles: TileBoard, poll_s: float = POLL_S) -> None:
        super().__init__("openlfr-scheduler", poll_s)
        self.store, self.settings, self.tiles = store, settings, tiles
        self.runs: dict[int, DeploymentRun] = {}
        self.finished: set[int] = set()  # ran to the end of their sources: not restarted

    def stop(self) -> None:
        super().stop()
        for run in list(self.runs.values()):
            run.stop()
        self.runs.clear()

    def live_deployments(self) -> set[int]:
        with self.store.session() as db:
            return {row.id for row in deployments.live_deployments(db)}

    def round(self) -> None:
        self.tick()

    def tick(self) -> None:
        live = self.live_deployments()
        for deployment_id in list(self.runs):
            run = self.runs[deployment_id]
            if deployment_id not in live:
                run.stop()
                del self.runs[deployment_id]
                run.note("", "stopped: the deployment may no longer match")
            elif not run.alive:
                del self.runs[deployment_id]
                self.finished.add(deployment_id)
        for deployment_id in live - set(self.runs) - self.finished:
            run = DeploymentRun(self.store, self.settings, deployment_id, self.tiles)
            try:
                run.start()
            except Exception as exc:
                log.warning("deployment %d cannot start: %s", deployment_id, exc)
                run.note("", f"cannot start: {exc}")
                self.finished.add(deployment_id)
                continue
            self.runs[deployment_id] = run
