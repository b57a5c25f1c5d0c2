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

Supervision: a run whose pipeline fails (it cannot start, a camera's analysis process dies, a bug) is restarted
with backoff (2 s, doubling, at most 60 s) for as long as its window is open; each failure and restart is in the
log, in the deployment's pipeline note and in the audit log (actor ``system``). The database may stop answering
without the pipeline noticing: alerts are held in memory by the run's dispatcher (at most ``HELD_ALERTS_MAX``)
and written when it answers again; notes, counts and audit entries wait in memory likewise (one bookkeeping
thread per run writes them, so a locked database never stalls the pipeline). ``status()`` says all of it, for
``/health``.

Exactly once across restarts (of the pipeline, or of the whole process): each camera's progress is stored
(``camera_progress``: the media time of the last frame analysed whose alerts are all committed, the tracker's
next id). A pipeline starting on a camera with progress continues it: a file from that time less
``RESUME_OVERLAP_S`` (so tracks form again before the point), a live stream live; track ids continue (never
given twice within (deployment, camera)); and each person's cooldown starts from their last stored alert on
that camera, so the track a resume creates for someone alerted just before the crash stays quiet.

Several processes on one database (``serve`` and any number of ``openlfr worker``, on any machines) share the
work by camera: a run is one camera of one deployment, started only by the process that holds the camera's lease
(``camera_progress.held_by``, see ``openlfr.store.progress_models``), renewed every ``lease_s / 6`` seconds. A
holder that dies stops renewing; another process takes the camera over once the lease has run out, so within
``lease_s + POLL_S`` seconds (``OPENLFR_CAMERA_LEASE_SECONDS``, default 30) plus its pipeline's start, and
resumes it from the stored progress. A holder that cannot renew for ``lease_s`` (its database gone) stops the
camera itself, so two processes never analyse one camera at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from openlfr.alerts.database import AlertDatabase
from openlfr.alerts.dispatch import AlertDispatcher
from openlfr.clock import utc, utc_now
from openlfr.governance.deployments import GovernanceError, Kind, may_match
from openlfr.governance.guard import MatchGuard
from openlfr.runtime.books import RunBooks, first_line
from openlfr.runtime.camera_health import CameraStateChanged, CameraStatus, CameraWatch
from openlfr.runtime.listing_watch import ListingWatch
from openlfr.runtime.tiles import TileBoard, tile_faces
from openlfr.services import camera_secrets
from openlfr.services.audit_log import audit_key
from openlfr.services.context import Context
from openlfr.services.live import CameraDefaults, LivePipeline, build_pipeline, camera_of, snapshot_watchlist
from openlfr.settings import Settings
from openlfr.store import Store
from openlfr.store.alert_models import Alert
from openlfr.store.governance_models import Deployment
from openlfr.store.progress_models import count_run, load_progress
from openlfr.stream.runner import CameraResume
from openlfr.stream.source import CameraConfig, SourceKind
from openlfr.stream.worker import FrameView
from openlfr.urls import redact_text

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often the scheduler looks at the deployments
TILE_INTERVAL_S = 0.5  # a camera picture for the console this often
HELD_ALERTS_MAX = 500  # alerts kept in memory while the database does not answer (each with its probe JPEG)
RESTART_FIRST_S = 2.0  # the first restart of a failed pipeline waits this long; doubled up to RESTART_MAX_S
RESTART_MAX_S = 60.0
RESUME_OVERLAP_S = 1.5  # a resumed file starts this much before its last analysed frame (tracks re-form)


def _load_facts(store: Store, deployment_id: int) -> Callable[[], Deployment | None]:
    def load() -> Deployment | None:
        with store.session() as db:
            return db.get(Deployment, deployment_id)

    return load


class DeploymentRun(RunBooks):
    """One deployment's cameras, analysed by the live pipeline's runner (one process per camera), restarted with
    backoff when it fails, until stopped, the window closes or every camera's source has ended."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        deployment_id: int,
        tiles: TileBoard,
        camera: str | None = None,
        holder: str | None = None,
    ) -> None:
        self.store, self.settings, self.deployment_id, self.tiles = store, settings, deployment_id, tiles
        self.camera, self.holder = camera, holder  # one camera under its lease; None: every camera, no lease
        self.lease_s = float(settings.camera_lease_seconds)
        self._renewed_at = time.monotonic()
        self.source_ended = False
        self.retrospective = False  # a retrospective search (read when the pipeline is prepared)
        self.analysis_s = 0.0  # wall time from the first frame read to the last, over the pipelines run
        self.guard = MatchGuard(_load_facts(store, deployment_id))
        self.ctx = Context.system(settings, audit_key(settings))
        self.thread: threading.Thread | None = None
        self.books: threading.Thread | None = None
        self.pipeline: LivePipeline | None = None
        self.runner: Any = None
        self.dispatcher: AlertDispatcher | None = None
        self.ends_at: datetime | None = None
        self.state = "starting"  # starting | running | restarting | finished | stopped | failed (gave up)
        self.restarts = 0
        self.last_failure: str | None = None
        self.database_error: str | None = None  # the last bookkeeping write the database refused, until one works
        self.notes: dict[str, str] = {}
        self._note_dirty = False
        self._audits: list[tuple[str, dict[str, Any]]] = []
        self._camera_events: list[CameraStateChanged] = []  # changes of camera state, not yet written
        self._done_counts: dict[str, dict[str, int]] = {}  # of the pipelines that ran before (restarts)
        self._live_counts: dict[str, dict[str, int]] = {}  # of the pipeline running now
        self._flushed: dict[str, dict[str, int]] = {}
        self._last_flush = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()  # the pipeline is to stop (no restart)
        self._abandon = threading.Event()  # give up on what still waits for the database
        self._pipeline_done = threading.Event()
        self._down_since: float | None = None  # epoch seconds: the database has not answered since
        self.resumed_at: dict[str, float] = {}  # camera -> media time its file was resumed at (last start)
        # camera -> (media time analysed to, next track id, alerts handed to the dispatcher by then)
        self._progress: dict[str, tuple[float, int, int, tuple[int, float, float]]] = {}
        self._saved_progress: dict[str, tuple[float, int, tuple[int, float, float]]] = {}
        self._counted_before: dict[str, tuple[int, float]] = {}  # camera -> (frames, gap_s) its earlier runs stored
        # A listing ended after authorisation: the pipeline is rebuilt from the (updated) snapshot at once.
        self.listings = ListingWatch(store, self.ctx, deployment_id, self._listings_ended)
        self.cameras = CameraWatch(deployment_id, settings.stream_stall_seconds, self._camera_changed)
        self._reloading = False

    @property
    def alive(self) -> bool:
        """Running, or still writing what it holds."""
        return self.thread is not None and self.thread.is_alive()

    def start(self) -> None:
        """Start the run's threads; the pipeline itself is built (and rebuilt after a failure) by the run."""
        self.thread = threading.Thread(
            target=self._supervise, name=f"openlfr-deployment-{self.deployment_id}", daemon=True
        )
        self.books = threading.Thread(target=self._keep_books, name=f"openlfr-books-{self.deployment_id}", daemon=True)
        self.listings.start()
        self.thread.start()
        self.books.start()

    def prepare(self) -> LivePipeline:
        """Build the deployment's pipeline (nothing runs yet): its snapshot, its cameras, the stream settings."""
        self._reloading = False
        self.listings.settle()
        snapshot = snapshot_watchlist(self.store, self.deployment_id, self.settings)
        facts = self.guard.permission()
        if not facts.allowed:
            raise GovernanceError(f"deployment {self.deployment_id} may not match: {facts.reason}")
        with self.store.session() as db:
            row = db.get(Deployment, self.deployment_id)
            assert row is not None
            self.ends_at = utc(row.ends_at)
            self.retrospective = Kind(row.kind) is Kind.RETROSPECTIVE
            if row.urgent_until is not None and row.authorised_by is None:  # it may match until then only
                self.ends_at = min(self.ends_at, utc(row.urgent_until))
        if self.dispatcher is None:  # one for the whole run: what it holds survives a restart of the pipeline
            self.dispatcher = AlertDispatcher(
                AlertDatabase(self.store),
                (),
                watchlist_name=snapshot.name,
                names=snapshot.names,
                deployment_id=self.deployment_id,
                held_max=HELD_ALERTS_MAX,
                on_incident=self._database_trouble,
            )
        records = [r for r in snapshot.cameras if self.camera is None or str(r["name"]) == self.camera]
        cameras, resume = self._resume(
            [camera_of(camera_secrets.opened(self.settings, r), CameraDefaults()) for r in records]
        )
        for camera in cameras:
            self.note(camera.name, "starting")
        self.cameras.pipeline_starting([camera.name for camera in cameras], restart=self.restarts > 0)
        # A live deployment's file stands in for a camera (tests, demonstrations): it plays at its own pace, as a
        # camera would. A retrospective search reads its files as fast as the machine allows, every frame.
        self.pipeline = build_pipeline(
            self.store,
            self.settings,
            snapshot,
            cameras,
            deployment_id=self.deployment_id,
            # Asked every half second in this process; the workers also stop matching at the window's end.
            may_match=self.guard.__bool__,
            match_until=self.ends_at,
            realtime=not self.retrospective,
            retry_for_window=not self.retrospective,
            on_error=self._camera_error,
            on_notice=self._camera_notice,
            on_stats=self._on_stats,
            on_view=self._on_view,
            view_interval_s=TILE_INTERVAL_S,
            dispatcher=self.dispatcher,
            resume=resume,
        )
        self.runner = self.pipeline.runner
        return self.pipeline

    def _resume(self, cameras: list[CameraConfig]) -> tuple[list[CameraConfig], dict[str, CameraResume]]:
        """Where each camera continues from its earlier runs (and count this start as a run)."""
        now = utc_now()
        with self.store.session() as db:
            progress = load_progress(db, self.deployment_id)
            mine = Alert.deployment_id == self.deployment_id
            last_alerts = db.execute(
                select(Alert.camera, Alert.person_ref, func.max(Alert.media_time_s), func.max(Alert.seen_at))
                .where(mine)
                .group_by(Alert.camera, Alert.person_ref)
            ).all()
            highest_track = dict(
                db.execute(select(Alert.camera, func.max(Alert.track_id)).where(mine).group_by(Alert.camera)).all()
            )
            for camera in cameras:
                count_run(db, self.deployment_id, camera.name)
        resumed, plans = [], {}
        for camera in cameras:
            row = progress.get(camera.name)
            is_file = camera.kind is SourceKind.FILE
            # Files: the pipeline's clock is the media time (an alert's, at most a frame or so early); live: now is 0.
            last = {
                str(person): float(media or 0.0) if is_file else (seen - now).total_seconds()
                for name, person, media, seen in last_alerts
                if name == camera.name
            }
            next_id = max(row.next_track_id if row else 1, int(highest_track.get(camera.name) or 0) + 1)
            if is_file and row is not None and row.frames:
                camera = replace(camera, counted_to_s=row.media_time_s)
                self._counted_before[camera.name] = (row.frames, row.gap_s)
            if is_file and row is not None and row.media_time_s > RESUME_OVERLAP_S:
                start = row.media_time_s - RESUME_OVERLAP_S
                camera = replace(camera, start_at_s=start)
                self.resumed_at[camera.name] = start
                log.info("deployment %d: camera %s resumes at %.1f s", self.deployment_id, camera.name, start)
            plans[camera.name] = CameraResume(next_id, last)
            resumed.append(camera)
        return resumed, plans

    # ----- supervision -----

    def _supervise(self) -> None:
        delay = RESTART_FIRST_S
        same, previous = 0, None  # failures in a row with the same reason
        try:
            while not self._stop.is_set():
                failure = self._run_once()
                failure = None if failure is None else redact_text(failure)  # shown on /health, logged, audited
                if self._reloading and not self._stop.is_set():
                    continue
                if failure is None or self._stop.is_set() or not self._window_open():
                    break
                same, previous = (same + 1 if failure == previous else 1), failure
                if same >= self.settings.pipeline_max_same_failures:
                    self._give_up(failure, same)
                    break
                self.restarts += 1
                self.state, self.last_failure = "restarting", failure
                self.cameras.all(
                    CameraStatus.RECONNECTING, f"the pipeline failed ({failure}); restart in {delay:.0f} s"
                )
                log.warning(
                    "deployment %d: the pipeline failed (%s); restart %d in %.0f s",
                    self.deployment_id,
                    failure,
                    self.restarts,
                    delay,
                )
                self.note("", f"the pipeline failed ({failure}); restart {self.restarts} in {delay:.0f} s")
                self._audit(
                    "deployment.pipeline_restart", {"restart": self.restarts, "reason": failure, "after_s": delay}
                )
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, RESTART_MAX_S)
        finally:
            if self.state != "failed":
                self.state = "stopped" if self._stop.is_set() else "finished"
            self.listings.stop()
            self._pipeline_done.set()
            # What the pipeline raised is still written, whatever the window does meanwhile (it was raised inside it).
            while self.dispatcher is not None and not self.dispatcher.drain(1.0) and not self._abandon.is_set():
                pass

    def _run_once(self) -> str | None:
        """One pipeline from start to end: None when its sources ended or it was stopped, else why it failed."""
        self.state = "starting"
        try:
            self.prepare()
        except Exception as exc:
            return f"cannot start: {first_line(exc)}"
        if self._stop.is_set() or self._reloading:
            return None
        self.state = "running"
        try:
            summary = self.runner.run()
        except Exception as exc:
            log.exception("deployment %d: the pipeline failed", self.deployment_id)
            self._end_counts({})
            return first_line(exc)
        self._end_counts({name: state.counters.as_dict() for name, state in summary.cameras.items()})
        self.analysis_s += summary.elapsed_s
        if self.runner.stopped:
            return None
        errors = summary.errors
        for name in summary.cameras:
            if name not in errors:
                self.note(name, "the source ended")
                self.cameras.set(name, CameraStatus.FINISHED, "the file was read to its end")
        self.source_ended = not errors
        return "; ".join(errors.values()) if errors else None

    def _give_up(self, failure: str, times: int) -> None:
        """The same failure again and again (a source that cannot be read): restarting would only flap; the run
        stops, says so on the page and in the audit log, and stays failed (``/health``: degraded) until the
        deployment is changed or this process starts again."""
        self.state, self.last_failure = "failed", failure
        log.error(
            "deployment %d: the pipeline failed the same way %d times (%s): stopped", self.deployment_id, times, failure
        )
        self.note("", f"stopped: the pipeline failed the same way {times} times in a row ({failure}); not restarted")
        self.cameras.all(CameraStatus.FAILED, f"given up after {times} failures in a row: {failure}")
        self._audit("deployment.pipeline_failed", {"failures": times, "reason": failure, "restarts": self.restarts})

    def _window_open(self) -> bool:
        """Whether a restart may match: the deployment as read now, or, unreadable, the window's end known."""
        try:
            facts = _load_facts(self.store, self.deployment_id)()
        except Exception:
            return self.ends_at is not None and utc_now() < self.ends_at.replace(tzinfo=self.ends_at.tzinfo or UTC)
        return may_match(facts, utc_now()).allowed

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the pipeline (no restart); held alerts go on being written (``close`` gives up on them)."""
        self._stop.set()
        if self.runner is not None:
            self.runner.stop()
        self._pipeline_done.wait(timeout)
        self.tiles.clear(self.deployment_id)

    def close(self, timeout: float = 10.0) -> None:
        """Stop, and write what waits for the database for at most ``timeout`` seconds; what remains is logged."""
        self.stop()
        if self.dispatcher is not None:
            self.dispatcher.close(timeout)
        self._abandon.set()
        for thread in (self.thread, self.books):
            if thread is not None:
                thread.join(timeout=timeout)

    def status(self) -> dict[str, Any]:
        """For ``/health``: the run's state, its restarts, and what waits for the database."""
        held = self.dispatcher.status() if self.dispatcher is not None else None
        failing = held.failing_since if held is not None else None
        with self._lock:
            notes = dict(self.notes)
        return {
            "deployment": self.deployment_id,
            "camera": self.camera,
            "held_by": self.holder,
            "state": self.state,
            "restarts": self.restarts,
            "last_failure": self.last_failure,
            "alerts_held": held.held if held else 0,
            "alerts_written": held.written if held else 0,
            "alerts_lost": held.lost if held else 0,
            "alerts_refused": held.refused if held else 0,  # people no longer listed when seen: not written
            "database_failing_since": None if failing is None else datetime.fromtimestamp(failing, UTC).isoformat(),
            "database_error": (held.last_error if failing is not None and held else None) or self.database_error,
            "notes": notes,
            "resumed_at_s": dict(self.resumed_at),
            "cameras": {name: {**h.as_dict(), "up": h.state.up} for name, h in self.cameras.states().items()},
        }

    @property
    def healthy(self) -> bool:
        status = self.status()
        return (
            status["state"] in ("starting", "running", "finished", "stopped")
            and not status["alerts_held"]
            and not status["alerts_lost"]
            and status["database_error"] is None
        )

    def _listings_ended(self, people: list[str]) -> None:
        """Snapshot entries ended early (expired or removed after authorisation): rebuild the pipeline without them."""
        count = f"{len(people)} listed {'person' if len(people) == 1 else 'people'}"
        log.warning("deployment %d: the listing of %s ended; the pipeline reloads", self.deployment_id, count)
        self.note("", f"the listing of {count} ended after authorisation: the pipeline reloaded without them")
        self._reloading = True
        if self.runner is not None:
            self.runner.stop()

    def _camera_notice(self, camera: str, message: str) -> None:
        self.note(camera, message)
        self.cameras.notice(camera, message)

    def _camera_error(self, camera: str, message: str) -> None:
        """A camera's source failed: the run restarts the pipeline (or gives up, which says ``failed``)."""
        self.note(camera, message)
        if camera:
            self.cameras.set(camera, CameraStatus.RECONNECTING, message)

    def _on_view(self, view: FrameView) -> None:
        if self.tiles.wants(self.deployment_id, view.camera):
            self.tiles.publish(self.deployment_id, view.camera, view.rgb, tile_faces(view))
