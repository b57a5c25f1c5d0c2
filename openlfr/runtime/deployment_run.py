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

A run is composed of small parts: a ``Supervisor`` (``openlfr.runtime.supervisor``) restarts its pipeline,
``Books`` (``openlfr.runtime.books``) write what it did, a ``MatchGuard`` and a ``ListingWatch`` keep matching
inside the authorisation, a ``CameraWatch`` (``openlfr.runtime.camera_health``) says how each camera is.

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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from openlfr.alerts.database import AlertDatabase
from openlfr.alerts.dispatch import AlertDispatcher
from openlfr.clock import utc, utc_now
from openlfr.governance.deployments import GovernanceError, Kind, may_match
from openlfr.governance.guard import MatchGuard
from openlfr.runtime.books import Books, RunLink, error_line
from openlfr.runtime.camera_health import CameraStatus, CameraWatch
from openlfr.runtime.listing_watch import ListingWatch
from openlfr.runtime.supervisor import RunState, Supervisor
from openlfr.runtime.tiles import TileBoard, tile_tracks
from openlfr.services import camera_secrets, retrospective
from openlfr.services.audit_log import audit_key
from openlfr.services.context import Context
from openlfr.services.live import CameraDefaults, LivePipeline, build_pipeline, camera_of, snapshot_watchlist
from openlfr.settings import Settings
from openlfr.store import Store
from openlfr.store.alert_models import Alert
from openlfr.store.governance_models import Deployment
from openlfr.store.progress_models import count_run, load_progress, release
from openlfr.stream.runner import CameraResume, CameraState
from openlfr.stream.source import CameraConfig, SourceKind
from openlfr.stream.worker import FrameView

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often the scheduler looks at the deployments
TILE_INTERVAL_S = 0.5  # a camera picture for the console this often
HELD_ALERTS_MAX = 500  # alerts kept in memory while the database does not answer (each with its probe JPEG)
RESUME_OVERLAP_S = 1.5  # a resumed file starts this much before its last analysed frame (tracks re-form)


def _load_facts(store: Store, deployment_id: int) -> Callable[[], Deployment | None]:
    def load() -> Deployment | None:
        with store.session() as db:
            return db.get(Deployment, deployment_id)

    return load


@dataclass(frozen=True)
class RunStatus:
    """What ``/health`` and ``/metrics`` say of a run: its state, restarts, what waits for the database, its
    cameras' health."""

    deployment: int
    camera: str | None
    held_by: str | None
    state: RunState
    restarts: int
    last_failure: str | None
    alerts_held: int
    alerts_written: int
    alerts_lost: int
    alerts_refused: int  # people no longer listed when seen: not written
    database_failing_since: str | None
    database_error: str | None
    notes: dict[str, str] = field(default_factory=dict)
    resumed_at_s: dict[str, float] = field(default_factory=dict)
    cameras: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return (
            self.state in (RunState.STARTING, RunState.RUNNING, RunState.FINISHED, RunState.STOPPED)
            and not self.alerts_held
            and not self.alerts_lost
            and self.database_error is None
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.state.value}


class DeploymentRun:
    """One camera of a deployment (or all its cameras, without a lease), analysed by the live pipeline's runner
    (one process per camera) until stopped, the window closes or its sources have ended. Composed of its parts:
    a :class:`Supervisor` (restarts), :class:`Books` (what it writes), a ``MatchGuard`` and a ``ListingWatch``
    (matching only inside the authorised window, for listed people), a :class:`CameraWatch` (camera health)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        deployment_id: int,
        tiles: TileBoard,
        camera: str | None = None,
        holder: str | None = None,
        count_alerts: bool = True,
    ) -> None:
        self.store, self.settings, self.deployment_id, self.tiles = store, settings, deployment_id, tiles
        self.count_alerts = count_alerts  # False where the event board counts committed alerts (serve)
        self.camera, self.holder = camera, holder  # one camera under its lease; None: every camera, no lease
        self.source_ended = False
        self.retrospective = False  # a retrospective search (read when the pipeline is prepared)
        self.analysis_s = 0.0  # wall time from the first frame read to the last, over the pipelines run
        self.ctx = Context.system(settings, audit_key(settings))
        self.thread: threading.Thread | None = None
        self.pipeline: LivePipeline | None = None
        self.runner: Any = None
        self.dispatcher: AlertDispatcher | None = None
        self.ends_at: datetime | None = None
        self._stop = threading.Event()  # the pipeline is to stop (no restart)
        self._abandon = threading.Event()  # give up on what still waits for the database
        self._pipeline_done = threading.Event()
        self.resumed_at: dict[str, float] = {}  # camera -> media time its file was resumed at (last start)
        link = RunLink(lambda: self.alive, self._tick, self._stop, self._abandon, self._lease_lost, self._books_done)
        lease_s = float(settings.camera_lease_seconds)
        self.books = Books(store, self.ctx, deployment_id, camera, holder, lease_s, link)
        self.cameras = CameraWatch(deployment_id, settings.stream_stall_seconds, self.books.camera_changed)
        self.guard = MatchGuard(_load_facts(store, deployment_id))
        # A listing ended after authorisation: the pipeline is rebuilt from the (updated) snapshot at once.
        self.listings = ListingWatch(store, self.ctx, deployment_id, self._listings_ended)
        self.supervisor = Supervisor(
            deployment_id, settings.pipeline_max_same_failures, self.books, self.cameras, self._stop, self._window_open
        )

    @property
    def state(self) -> RunState:
        return self.supervisor.state

    def note(self, camera: str, message: str) -> None:
        self.books.note(camera, message)

    @property
    def alive(self) -> bool:
        """Running, or still writing what it holds."""
        return self.thread is not None and self.thread.is_alive()

    def start(self) -> None:
        """Start the run's threads; the pipeline itself is built (and rebuilt after a failure) by the run."""
        self.thread = threading.Thread(
            target=self._supervise, name=f"openlfr-deployment-{self.deployment_id}", daemon=True
        )
        self.thread.start()
        self.books.start()

    def prepare(self) -> LivePipeline:
        """Build the deployment's pipeline (nothing runs yet): its snapshot, its cameras, the stream settings."""
        self.supervisor.reloading = False
        self.listings.settle()
        snapshot = snapshot_watchlist(self.store, self.deployment_id, self.settings)
        facts = self.guard.permission()
        if not facts.allowed:
            raise GovernanceError(f"deployment {self.deployment_id} may not match: {facts.reason}")
        with self.store.session() as db:
            row = db.get(Deployment, self.deployment_id)
            assert row is not None
            self.ends_at = utc(row.ends_at)
            self.retrospective = self.books.retrospective = Kind(row.kind) is Kind.RETROSPECTIVE
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
                on_incident=self.books.database_trouble,
            )
            self.books.dispatcher = self.dispatcher
        records = [r for r in snapshot.cameras if self.camera is None or str(r["name"]) == self.camera]
        cameras, resume = self._resume(
            [camera_of(camera_secrets.opened(self.settings, r), CameraDefaults()) for r in records]
        )
        for camera in cameras:
            self.note(camera.name, "starting")
        self.cameras.pipeline_starting([camera.name for camera in cameras], restart=self.supervisor.restarts > 0)
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
            count_alerts=self.count_alerts,
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
                self.books.counted_before[camera.name] = (row.frames, row.gap_s)
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
        try:
            self.supervisor.run(self._run_once)
        finally:
            self._pipeline_done.set()
            # What the pipeline raised is still written, whatever the window does meanwhile (it was raised inside it).
            while self.dispatcher is not None and not self.dispatcher.drain(1.0) and not self._abandon.is_set():
                pass

    def _run_once(self) -> str | None:
        """One pipeline from start to end: None when its sources ended or it was stopped, else why it failed."""
        self.supervisor.state = RunState.STARTING
        try:
            self.prepare()
        except Exception as exc:
            return f"cannot start: {error_line(exc)}"
        if self._stop.is_set() or self.supervisor.reloading:
            return None
        self.supervisor.state = RunState.RUNNING
        try:
            summary = self.runner.run()
        except Exception as exc:
            log.exception("deployment %d: the pipeline failed", self.deployment_id)
            self.books.end_counts({})
            return error_line(exc)
        self.books.end_counts({name: state.counters.as_dict() for name, state in summary.cameras.items()})
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
        for thread in (self.thread, self.books.thread):
            if thread is not None:
                thread.join(timeout=timeout)

    def status(self) -> RunStatus:
        """For ``/health`` and ``/metrics``: the run's state, its restarts, and what waits for the database."""
        held = self.dispatcher.status() if self.dispatcher is not None else None
        failing = held.failing_since if held is not None else None
        books = self.books
        return RunStatus(
            deployment=self.deployment_id,
            camera=self.camera,
            held_by=self.holder,
            state=self.supervisor.state,
            restarts=self.supervisor.restarts,
            last_failure=self.supervisor.last_failure,
            alerts_held=held.held if held else 0,
            alerts_written=held.written if held else 0,
            alerts_lost=held.lost if held else 0,
            alerts_refused=held.refused if held else 0,
            database_failing_since=None if failing is None else datetime.fromtimestamp(failing, UTC).isoformat(),
            database_error=(held.last_error if failing is not None and held else None) or books.database_error,
            notes=books.notes_now(),
            resumed_at_s=dict(self.resumed_at),
            cameras={name: {**h.as_dict(), "up": h.state.up} for name, h in self.cameras.states().items()},
        )

    @property
    def healthy(self) -> bool:
        return self.status().healthy

    def _tick(self) -> None:
        """Every round of the books while the pipeline runs: a camera with no frame for a while is stalled, and
        the snapshot is compared with the live listings every ``LISTING_CHECK_S``."""
        self.cameras.look()
        self.listings.poll()

    def _on_stats(self, states: dict[str, CameraState]) -> None:
        self.cameras.pipeline_reports(states)
        self.books.on_stats(states)

    def _lease_lost(self, reason: str) -> None:
        """The books could not keep the camera's lease: the camera stops here (another process may take it)."""
        self._stop.set()
        if self.runner is not None:
            self.runner.stop()

    def _books_done(self) -> None:
        """Everything is written: the camera's lease is given back (its source ended: nobody takes it up again)."""
        if self.camera is None or self.holder is None:
            return
        try:
            with self.store.session() as db:
                release(db, self.deployment_id, self.camera, self.holder, ended=self.source_ended)
            if self.retrospective and self.source_ended:
                with self.store.session() as db:
                    retrospective.finish_if_done(db, self.ctx, self.deployment_id, self.analysis_s)
        except Exception as exc:  # the lease runs out by itself
            log.warning("deployment %d: cannot give back camera %s: %s", self.deployment_id, self.camera, exc)

    def _listings_ended(self, people: list[str]) -> None:
        """Snapshot entries ended early (expired or removed after authorisation): rebuild the pipeline without them."""
        count = f"{len(people)} listed {'person' if len(people) == 1 else 'people'}"
        log.warning("deployment %d: the listing of %s ended; the pipeline reloads", self.deployment_id, count)
        self.note("", f"the listing of {count} ended after authorisation: the pipeline reloaded without them")
        self.supervisor.reloading = True
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
            self.tiles.publish(self.deployment_id, view.camera, view.rgb, tile_tracks(view))
