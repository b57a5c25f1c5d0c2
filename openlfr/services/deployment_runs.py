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

from sqlalchemy import func, select, update

from openlfr.alerts.database import AlertDatabase
from openlfr.alerts.dispatch import AlertDispatcher
from openlfr.clock import utc_now
from openlfr.governance.deployments import GovernanceError, may_match
from openlfr.governance.guard import MatchGuard
from openlfr.services import deployments
from openlfr.services.audit_log import audit_key
from openlfr.services.context import Context
from openlfr.services.listing_watch import ListingWatch
from openlfr.services.live import CameraDefaults, LivePipeline, build_pipeline, camera_of, snapshot_watchlist
from openlfr.services.tiles import TileBoard, tile_faces
from openlfr.settings import Settings
from openlfr.store import Store
from openlfr.store.alert_models import Alert
from openlfr.store.governance_models import Deployment
from openlfr.store.progress_models import camera_notes, claim, count_run, load_progress, release, save_progress
from openlfr.stream.runner import CameraResume, CameraState
from openlfr.stream.source import CameraConfig, SourceKind
from openlfr.stream.worker import FrameView

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often the scheduler looks at the deployments
FLUSH_S = 2.0  # how often a camera adds its counts to the deployment's record
TILE_INTERVAL_S = 0.5  # a camera picture for the console this often
HELD_ALERTS_MAX = 500  # alerts kept in memory while the database does not answer (each with its probe JPEG)
RESTART_FIRST_S = 2.0  # the first restart of a failed pipeline waits this long; doubled up to RESTART_MAX_S
RESTART_MAX_S = 60.0
BOOKS_S = 0.5  # how often the bookkeeping thread looks for notes, counts and audit entries to write
COUNT_KEYS = ("decoded", "faces_seen", "tracks", "alerts")
RESUME_OVERLAP_S = 1.5  # a resumed file starts this much before its last analysed frame (tracks re-form)


def _load_facts(store: Store, deployment_id: int) -> Callable[[], Deployment | None]:
    def load() -> Deployment | None:
        with store.session() as db:
            return db.get(Deployment, deployment_id)

    return load


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


class DeploymentRun:
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
        self.guard = MatchGuard(_load_facts(store, deployment_id))
        self.ctx = Context.system(settings, audit_key(settings))
        self.thread: threading.Thread | None = None
        self.books: threading.Thread | None = None
        self.pipeline: LivePipeline | None = None
        self.runner: Any = None
        self.dispatcher: AlertDispatcher | None = None
        self.ends_at: datetime | None = None
        self.state = "starting"  # starting | running | restarting | finished | stopped
        self.restarts = 0
        self.last_failure: str | None = None
        self.database_error: str | None = None  # the last bookkeeping write the database refused, until one works
        self.notes: dict[str, str] = {}
        self._note_dirty = False
        self._audits: list[tuple[str, dict[str, Any]]] = []
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
        self._progress: dict[str, tuple[float, int, int]] = {}
        self._saved_progress: dict[str, tuple[float, int]] = {}
        # A listing ended after authorisation: the pipeline is rebuilt from the (updated) snapshot at once.
        self.listings = ListingWatch(store, self.ctx, deployment_id, self._listings_ended)
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
            self.ends_at = row.ends_at
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
        cameras, resume = self._resume([camera_of(record, CameraDefaults()) for record in records])
        for camera in cameras:
            self.note(camera.name, "starting")
        # A file stands in for a camera (tests, demonstrations): play it at its own pace, as a camera would.
        self.pipeline = build_pipeline(
            self.store,
            self.settings,
            snapshot,
            cameras,
            deployment_id=self.deployment_id,
            # Asked every half second in this process; the workers also stop matching at the window's end.
            may_match=self.guard.__bool__,
            match_until=self.ends_at,
            realtime=True,
            retry_for_window=True,
            on_error=self.note,
            on_notice=self.note,
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
        try:
            while not self._stop.is_set():
                failure = self._run_once()
                if self._reloading and not self._stop.is_set():
                    continue
                if failure is None or self._stop.is_set() or not self._window_open():
                    break
                self.restarts += 1
                self.state, self.last_failure = "restarting", failure
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
            return f"cannot start: {_first_line(exc)}"
        if self._stop.is_set() or self._reloading:
            return None
        self.state = "running"
        try:
            summary = self.runner.run()
        except Exception as exc:
            log.exception("deployment %d: the pipeline failed", self.deployment_id)
            self._end_counts({})
            return _first_line(exc)
        self._end_counts({name: state.counters.as_dict() for name, state in summary.cameras.items()})
        if self.runner.stopped:
            return None
        errors = summary.errors
        for name in summary.cameras:
            if name not in errors:
                self.note(name, "the source ended")
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

    # ----- what the operator sees, written by the bookkeeping thread -----

    def note(self, camera: str, message: str) -> None:
        """What the operator should know about a camera, on the deployment's page."""
        text = message if message.startswith("camera") or not camera else f"camera {camera}: {message}"
        with self._lock:
            self.notes[camera] = text
            self._note_dirty = True

    def incident(self, action: str, text: str) -> None:
        self.note("", text)
        self._audit(action, {"what": text})

    def _database_trouble(self, error: str | None) -> None:
        """The database stopped answering (``error``: what it said) or answers again (None): an incident each."""
        now = time.time()
        held = self.dispatcher.status() if self.dispatcher is not None else None
        if error is None and (self.database_error is not None or (held is not None and held.failing_since)):
            return  # one of the run's writers still gets no answer
        with self._lock:
            since = self._down_since
            if (error is None) == (since is None):
                return
            self._down_since = now if error is not None else None
        if error is not None:
            self.incident(
                "deployment.database_incident",
                f"the database does not answer ({error}); alerts, counts and notes are held in memory",
            )
            return
        assert since is not None
        lost = f"{held.lost} alerts lost" if held is not None and held.lost else "nothing held was lost"
        began = datetime.fromtimestamp(since, UTC).strftime("%H:%M:%S")
        self.incident(
            "deployment.database_incident",
            f"the database answers again after {now - since:.0f} s (no answer since {began} UTC); {lost}",
        )

    def _audit(self, action: str, details: dict[str, Any]) -> None:
        with self._lock:
            self._audits.append((action, {**details, "at": utc_now().isoformat()}))

    def _keep_books(self) -> None:
        while True:
            finished = not (self.thread is not None and self.thread.is_alive())
            if not finished:
                self._renew_lease()
            clean = self._write_books(force=finished)
            if (finished and clean) or self._abandon.is_set():
                break
            time.sleep(BOOKS_S)
        if self.camera is not None and self.holder is not None:
            try:
                with self.store.session() as db:
                    release(db, self.deployment_id, self.camera, self.holder, ended=self.source_ended)
            except Exception as exc:  # the lease runs out by itself
                log.warning("deployment %d: cannot give back camera %s: %s", self.deployment_id, self.camera, exc)

    def _renew_lease(self) -> None:
        """Keep the camera's lease; stop the camera when it is lost, or cannot be renewed before it runs out."""
        if self.camera is None or self.holder is None or self._stop.is_set():
            return
        if time.monotonic() - self._renewed_at < self.lease_s / 6:
            return
        try:
            with self.store.session() as db:
                held = claim(db, self.deployment_id, self.camera, self.holder, self.lease_s)
        except Exception as exc:
            if time.monotonic() - self._renewed_at < self.lease_s * 0.9:
                return  # (the bookkeeping reports the database's trouble)
            reason = f"cannot renew the lease of camera {self.camera} ({_first_line(exc)}): stopped here"
        else:
            if held:
                self._renewed_at = time.monotonic()
                return
            reason = f"camera {self.camera} is held by another worker now: stopped here"
        log.warning("deployment %d: %s", self.deployment_id, reason)
        self.note("", reason)
        self._stop.set()
        if self.runner is not None:
            self.runner.stop()

    def _write_books(self, force: bool = False) -> bool:
        """Write the note, the counts and the audit entries that wait; True when nothing waits any more."""
        try:
            with self._lock:
                joined, dirty = "; ".join(v for v in self.notes.values() if v), self._note_dirty
                self._note_dirty = False
            if dirty:
                try:
                    with self.store.session() as db:
                        if self.camera is not None:  # the page shows the notes of every camera's run
                            joined = camera_notes(db, self.deployment_id, self.camera, joined[:2000])
                        db.execute(
                            update(Deployment)
                            .where(Deployment.id == self.deployment_id)
                            .values(pipeline_note=joined[:2000])
                        )
                except Exception:
                    with self._lock:
                        self._note_dirty = True
                    raise
            while self._audits:
                action, details = self._audits[0]
                with self.store.session() as db:
                    self.ctx.audit(db, action, f"deployment:{self.deployment_id}", details)
                with self._lock:
                    self._audits.pop(0)
            if force or time.monotonic() - self._last_flush >= FLUSH_S:
                self._last_flush = time.monotonic()
                self._flush()
        except Exception as exc:
            if self.database_error is None:
                log.warning("deployment %d: the database does not take the run's record: %s", self.deployment_id, exc)
            self.database_error = _first_line(exc)
            self._database_trouble(self.database_error)
            return False
        if self.database_error is not None:
            log.warning("deployment %d: the database takes the run's record again", self.deployment_id)
            self.database_error = None
            self._database_trouble(None)
        with self._lock:
            return not self._note_dirty and not self._audits and self._counts_flushed()

    def _totals(self) -> dict[str, dict[str, int]]:
        cameras = set(self._done_counts) | set(self._live_counts)
        zero = dict.fromkeys(COUNT_KEYS, 0)
        return {
            name: {
                key: self._done_counts.get(name, zero).get(key, 0) + self._live_counts.get(name, zero).get(key, 0)
                for key in COUNT_KEYS
            }
            for name in cameras
        }

    def _counts_flushed(self) -> bool:
        return all(self._flushed.get(name) == counts for name, counts in self._totals().items())

    def _end_counts(self, final: dict[str, dict[str, int]]) -> None:
        """A pipeline ended: its final counts (or the last reported, if it failed) join the run's."""
        with self._lock:
            ended = {**self._live_counts, **final}
            for name, counts in ended.items():
                done = self._done_counts.setdefault(name, dict.fromkeys(COUNT_KEYS, 0))
                for key in COUNT_KEYS:
                    done[key] += counts.get(key, 0)
            self._live_counts = {}

    def _save_progress(self) -> None:
        """Each camera's progress, once every alert raised up to it is in the database (else it waits)."""
        held = self.dispatcher.status() if self.dispatcher is not None else None
        settled = held.written + held.lost + held.refused if held is not None else 0
        with self._lock:
            due = {
                name: (media, next_id)
                for name, (media, next_id, handed) in self._progress.items()
                if handed <= settled and self._saved_progress.get(name) != (media, next_id)
            }
        for name, (media, next_id) in due.items():
            with self.store.session() as db:
                save_progress(db, self.deployment_id, name, media, next_id)
            self._saved_progress[name] = (media, next_id)

    def _flush(self) -> None:
        """Add what each camera counted since the last flush to the deployment's record (the only trace of faces)."""
        self._save_progress()
        with self._lock:
            totals = self._totals()
        for camera, counts in totals.items():
            before = self._flushed.get(camera, dict.fromkeys(COUNT_KEYS, 0))
            delta = {key: counts[key] - before[key] for key in COUNT_KEYS}
            if any(delta.values()):
                with self.store.session() as db:
                    deployments.add_counts(
                        db, self.deployment_id, delta["decoded"], delta["faces_seen"], delta["tracks"], delta["alerts"]
                    )
            self._flushed[camera] = counts

    def _listings_ended(self, people: list[str]) -> None:
        """Snapshot entries ended early (expired or removed after authorisation): rebuild the pipeline without them."""
        count = f"{len(people)} listed {'person' if len(people) == 1 else 'people'}"
        log.warning("deployment %d: the listing of %s ended; the pipeline reloads", self.deployment_id, count)
        self.note("", f"the listing of {count} ended after authorisation: the pipeline reloaded without them")
        self._reloading = True
        if self.runner is not None:
            self.runner.stop()

    def _on_view(self, view: FrameView) -> None:
        if self.tiles.wants(self.deployment_id, view.camera):
            self.tiles.publish(self.deployment_id, view.camera, view.rgb, tile_faces(view))

    def _on_stats(self, states: dict[str, CameraState]) -> None:
        for name, state in states.items():
            if state.ready and self.notes.get(name, "").endswith("starting"):
                self.note(name, "running")
        held = self.dispatcher.status() if self.dispatcher is not None else None
        handed = held.held + held.written + held.lost if held is not None else 0
        with self._lock:
            self._live_counts = {name: state.counters.as_dict() for name, state in states.items()}
            for name, state in states.items():
                if state.analysed_to >= 0:
                    self._progress[name] = (state.analysed_to, state.next_track_id, handed)
