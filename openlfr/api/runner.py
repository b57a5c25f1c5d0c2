"""Running the live pipeline for deployments: the ``Scheduler`` starts a ``DeploymentRun`` for each deployment
that ``may_match`` allows and stops it when that stops being true.

Three locks keep matching inside an authorised window: the scheduler only starts runs for live deployments and
stops them within a second of a cancellation or the end of the window; every camera's pipeline asks a
``MatchGuard`` before matching each frame; and the gallery it searches is a ``GuardedGallery`` that finds
nobody once the guard says no. The gallery is built from the deployment's snapshot (what the authoriser
approved), never from the live watchlist.

An alert is committed to the database (the pipeline's ``alerts`` table, with its deployment) before anything
else sees it; the console's event stream finds it there. Counts (frames, faces seen, tracks) are added to the
deployment's record every few seconds. Camera tiles are rendered in memory for the console.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import select, update

from openlfr.api import services
from openlfr.api.tiles import TileBoard, TileFace
from openlfr.governance import deployments
from openlfr.governance.guard import GuardedGallery, MatchGuard
from openlfr.settings import Settings
from openlfr.store import Store
from openlfr.store.governance_models import Deployment, SnapshotImage, SnapshotPerson

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often the scheduler looks at the deployments
FLUSH_S = 2.0  # how often a camera adds its counts to the deployment's record
MAX_LAG_S = 0.5  # a frame this late is dropped unanalysed: never an unbounded backlog


@dataclass(frozen=True)
class SnapshotGallery:
    gallery: Any  # openlfr.watchlist.search.Gallery
    names: dict[str, str]
    threshold: float
    model_id: str
    watchlist_name: str
    cameras: list[dict[str, Any]] = field(default_factory=list)


def load_snapshot(store: Store, deployment_id: int) -> SnapshotGallery:
    """The deployment's frozen watchlist as a searchable gallery (person ids = reference ids, references = images)."""
    from openlfr.watchlist.search import Gallery

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
        )
        return SnapshotGallery(gallery, names, float(threshold), model_id, row.watchlist_name, list(row.cameras))


def _load_facts(store: Store, deployment_id: int) -> Callable[[], Deployment | None]:
    def load() -> Deployment | None:
        with store.session() as db:
            return db.get(Deployment, deployment_id)

    return load


class DeploymentRun:
    """One deployment's cameras, each on its own thread, until stopped or every camera has finished."""

    def __init__(self, store: Store, settings: Settings, deployment_id: int, tiles: TileBoard) -> None:
        self.store, self.settings, self.deployment_id, self.tiles = store, settings, deployment_id, tiles
        self.stop_event = threading.Event()
        self.guard = MatchGuard(_load_facts(store, deployment_id))
        self.threads: list[threading.Thread] = []
        self.notes: list[str] = []
        self._lock = threading.Lock()

    @property
    def alive(self) -> bool:
        return any(t.is_alive() for t in self.threads)

    def start(self) -> None:
        snapshot = load_snapshot(self.store, self.deployment_id)
        gallery = GuardedGallery(snapshot.gallery, self.guard)
        for camera in snapshot.cameras:
            thread = threading.Thread(
                target=self._camera,
                args=(str(camera["name"]), str(camera["source"]), gallery, snapshot),
                name=f"openlfr-d{self.deployment_id}-{camera['name']}",
                daemon=True,
            )
            self.threads.append(thread)
            thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=15)
        self.tiles.clear(self.deployment_id)

    def note(self, message: str) -> None:
        with self._lock:
            self.notes = [*self.notes[-4:], message]
            text = "; ".join(self.notes)
        with self.store.session() as db:
            db.execute(update(Deployment).where(Deployment.id == self.deployment_id).values(pipeline_note=text[:2000]))

    # ----- one camera -----

    def _camera(self, name: str, source: str, gallery: GuardedGallery, snapshot: SnapshotGallery) -> None:
        try:
            self._run_camera(name, source, gallery, snapshot)
        except Exception as exc:  # one camera failing must not stop the others; the operator sees why
            log.warning("camera %s of deployment %d stopped: %s", name, self.deployment_id, exc)
            self.note(f"camera {name}: {exc}")

    def _run_camera(self, name: str, source: str, gallery: GuardedGallery, snapshot: SnapshotGallery) -> None:
        from openlfr.stream.evidence import EvidenceRule
        from openlfr.stream.frames import YuvFrame
        from openlfr.stream.pipeline import CameraPipeline, PipelineConfig
        from openlfr.stream.source import CameraConfig, Capture, CaptureOptions, SourceKind
        from openlfr.vision.engine import build_engine

        camera = CameraConfig(name=name, url=source)
        engine = build_engine(self.settings)
        pipeline = CameraPipeline(
            camera,
            PipelineConfig(),
            engine,
            engine.detector,
            gallery,
            EvidenceRule(threshold=snapshot.threshold),
            may_match=self.guard.__bool__,
        )
        # A file stands in for a camera (tests, demonstrations): play it at its own pace, as a camera would.
        capture = Capture(camera, CaptureOptions(realtime=camera.kind is SourceKind.FILE), on_notice=self.note)
        buffer = np.empty(0, np.uint8)
        flushed: dict[str, int] = {"processed": 0, "faces_seen": 0, "tracks": 0, "alerts": 0}
        last_flush = time.monotonic()
        self.note(f"camera {name}: running")
        try:
            for captured in capture.frames(self.stop_event):
                if time.monotonic() - captured.arrival > MAX_LAG_S:
                    pipeline.counters.dropped += 1
                    continue
                if buffer.size != captured.format.nbytes:
                    buffer = np.empty(captured.format.nbytes, np.uint8)
                captured.write_i420(buffer)
                frame = YuvFrame(buffer, captured.format)
                result = pipeline.process(frame, captured.clock, captured.arrival, captured.media_time)
                for found in result.alerts:
                    self._commit_alert(found, snapshot)
                if self.tiles.wants(self.deployment_id, name):
                    rgb, _ = frame.rgb()
                    faces = [TileFace(b.box, b.alerted, b.label) for b in result.boxes]
                    self.tiles.publish(self.deployment_id, name, rgb, faces)
                if time.monotonic() - last_flush >= FLUSH_S:
                    flushed = self._flush(pipeline.counters.as_dict(), flushed)
                    last_flush = time.monotonic()
        finally:
            pipeline.finish()
            self._flush(pipeline.counters.as_dict(), flushed)
        if not self.stop_event.is_set():
            self.note(f"camera {name}: the source ended")

    def _flush(self, counters: dict[str, int], flushed: dict[str, int]) -> dict[str, int]:
        delta = {key: counters[key] - flushed[key] for key in flushed}
        if any(delta.values()):
            with self.store.session() as db:
                services.add_counts(
                    db, self.deployment_id, delta["processed"], delta["faces_seen"], delta["tracks"], delta["alerts"]
                )
        return {key: counters[key] for key in flushed}

    def _commit_alert(self, found: Any, snapshot: SnapshotGallery) -> int:
        """Write the alert (and commit) before anyone is told: the console learns of it from the database."""
        from openlfr.store.alert_models import Alert

        person = str(found.person_id)
        started = time.monotonic()
        with self.store.session() as db:
            alert = Alert(
                uid=str(uuid.uuid4()),
                created_at=datetime.now(UTC),
                seen_at=found.seen_at,
                deployment_id=self.deployment_id,
                watchlist_name=snapshot.watchlist_name,
                camera=found.camera,
                track_id=int(found.track_id),
                media_time_s=float(found.media_time),
                person_ref=person,
                person_name=snapshot.names.get(person, ""),
                reference_image_id=int(found.reference_id),
                score=float(found.score),
                threshold=float(found.threshold),
                model_id=found.model_id,
                candidates=[
                    {
                        "person": str(p),
                        "name": snapshot.names.get(str(p), ""),
                        "reference_image_id": int(r),
                        "score": round(float(s), 4),
                    }
                    for p, r, s in found.candidates
                ],
                evidence=dict(found.evidence),
                probe_jpeg=found.probe_jpeg,
                latency_ms=(started - found.arrival) * 1000.0,
            )
            db.add(alert)
            db.flush()
            return int(alert.id)


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
                run.note("stopped: the deployment may no longer match")
            elif not run.alive:
                del self.runs[deployment_id]
                self.finished.add(deployment_id)
        for deployment_id in live - set(self.runs) - self.finished:
            run = DeploymentRun(self.store, self.settings, deployment_id, self.tiles)
            try:
                run.start()
            except Exception as exc:
                log.warning("deployment %d cannot start: %s", deployment_id, exc)
                run.note(f"cannot start: {exc}")
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
