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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select, update

from openlfr.api import services
from openlfr.api.tiles import TileBoard, TileFace
from openlfr.governance import deployments
from openlfr.governance.guard import MatchGuard
from openlfr.settings import Settings
from openlfr.store import Store
from openlfr.store.governance_models import Deployment, SnapshotImage, SnapshotPerson
from openlfr.vision.types import Box

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often the scheduler looks at the deployments
FLUSH_S = 2.0  # how often a camera adds its counts to the deployment's record
TILE_INTERVAL_S = 0.5  # a camera picture for the console this often


@dataclass(frozen=True)
class SnapshotGallery:
    gallery: Any  # openlfr.watchlist.search.Gallery
    names: dict[str, str]
    threshold: float
    model_id: str
    watchlist_name: str
    cameras: list[dict[str, Any]] = field(default_factory=list)


def load_snapshot(store: Store, deployment_id: int, settings: Settings) -> SnapshotGallery:
    """The deployment's frozen watchlist as a searchable gallery (person ids = reference ids, references = images)."""
    from openlfr.watchlist.search import Gallery, gallery_options

    with store.session() as db:
        row = db.get(Deployment, deployment_id)
        if row is None or row.snapshot_taken_at is None or row.snapshot_destroyed_at is not None:
            raise services.NotFound(f"deployment {deployment_id} has no watchlist snapshot")
        found = db.execute(
            select(SnapshotImage.id, SnapshotImage.embedding, SnapshotImage.model_id, SnapshotPerson.person_ref)
            .join(SnapshotPerson, SnapshotPerson.id == SnapshotImage.person_id)
            .where(SnapshotImage.deployment_id == deployment_id)
            .order_by(SnapshotImage.id)
        ).all()
        names = {
            p.person_ref: p.display_name
            for p in db.scalars(select(SnapshotPerson).where(SnapshotPerson.deployment_id == deployment_id))
        }
        threshold = row.effective_threshold if row.effective_threshold is not None else row.threshold
        if threshold is None or not found:
            raise services.NotFound(f"deployment {deployment_id} has no threshold or no references")
        model_id = found[0][2]
        gallery = Gallery(
            np.stack([np.asarray(r[1], np.float32) for r in found]),
            [r[3] for r in found],
            [int(r[0]) for r in found],
            model_id,
            **gallery_options(settings),
        )
        return SnapshotGallery(gallery, names, float(threshold), model_id, row.watchlist_name, list(row.cameras))


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
        self.runner: Any = None
        self.notes: dict[str, str] = {}
        self._flushed: dict[str, dict[str, int]] = {}
        self._last_flush = 0.0
        self._lock = threading.Lock()

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self) -> None:
        from openlfr.alerts.database import AlertDatabase
        from openlfr.alerts.dispatch import AlertDispatcher
        from openlfr.stream.evidence import EvidenceRule
        from openlfr.stream.pipeline import PipelineConfig
        from openlfr.stream.runner import PipelineRunner, RunnerOptions
        from openlfr.stream.source import CameraConfig, CaptureOptions

        snapshot = load_snapshot(self.store, self.deployment_id, self.settings)
        facts = self.guard.permission()
        if not facts.allowed:
            raise services.GovernanceError(f"deployment {self.deployment_id} may not match: {facts.reason}")
        with self.store.session() as db:
            row = db.get(Deployment, self.deployment_id)
            assert row is not None
            ends_at = row.ends_at
        cameras = [CameraConfig(name=str(c["name"]), url=str(c["source"])) for c in snapshot.cameras]
        dispatcher = AlertDispatcher(
            AlertDatabase(self.store),
            [],
            watchlist_name=snapshot.watchlist_name,
            names=snapshot.names,
            deployment_id=self.deployment_id,
        )
        # A file stands in for a camera (tests, demonstrations): play it at its own pace, as a camera would.
        self.runner = PipelineRunner(
            cameras,
            PipelineConfig.from_settings(self.settings),
            self.settings,
            snapshot.gallery,
            EvidenceRule(threshold=snapshot.threshold),
            on_alert=dispatcher.on_alert,
            on_error=lambda camera, message: self.note(camera, message),
            on_notice=lambda camera, message: self.note(camera, message),
            on_stats=self._on_stats,
            on_view=self._on_view,
            # Asked every half second in this process; the workers also stop matching at the window's end.
            may_match=self.guard.__bool__,
            options=RunnerOptions(
                realtime=True,
                view_interval_s=TILE_INTERVAL_S,
                match_until=ends_at.timestamp(),
                capture=CaptureOptions(reconnect_attempts=0),  # a live camera is retried for the whole window
            ),
        )
        for camera in cameras:
            self.note(camera.name, "starting")
        self.thread = threading.Thread(target=self._run, name=f"openlfr-deployment-{self.deployment_id}", daemon=True)
        self.thread.start()

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

    def _on_view(self, view: Any) -> None:
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

    def _on_stats(self, states: dict[str, Any]) -> None:
        for name, state in states.items():
            if getattr(state, "ready", False) and self.notes.get(name, "").endswith("starting"):
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
                services.add_counts(
                    db, self.deployment_id, delta["decoded"], delta["faces_seen"], delta["tracks"], delta["alerts"]
                )
            self._flushed[camera] = {key: counters.get(key, 0) for key in keys}


class Scheduler:
    """Keeps exactly the live deployments running. A thread; ``start`` and ``stop`` it."""

    def __init__(self, store: Store, settings: Settings, tiles: TileBoard, poll_s: float = POLL_S) -> None:
        self.store, self.settings, self.tiles, self.poll_s = store, settings, tiles, poll_s
        self.runs: dict[int, DeploymentRun] = {}
        self.finished: set[int] = set()  # ran to the end of their sources: not restarted
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="openlfr-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=20)
        for run in list(self.runs.values()):
            run.stop()
        self.runs.clear()

    def live_deployments(self) -> set[int]:
        moment = deployments.now_utc()
        with self.store.session() as db:
            rows = db.scalars(select(Deployment).where(Deployment.status == deployments.Status.AUTHORISED.value))
            return {row.id for row in rows if deployments.may_match(row, moment)}

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

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("scheduler round failed")
            self._stop.wait(self.poll_s)
