"""A deployment run's books: what it tells the operator (per-camera notes, audit entries), what it counted (frames,
faces seen, tracks, alerts: the only trace of the faces that raised no alert), where each camera got to (for a
resume), each camera's change of state, and its camera's lease. A :class:`Books` is part of a ``DeploymentRun``
(``openlfr.runtime.deployment_run``): the run's parts hand it what happened, it keeps it in memory, and its one
thread writes it every ``BOOKS_S``, so a locked or absent database never stalls the pipeline; what the database
refuses waits, and the trouble is an incident (audited when it answers again).

A retrospective search's progress (seconds of footage analysed, from the cameras' stored progress) is written
with the counts; when every camera's file has been read to its end the search is recorded as processed
(``openlfr.services.retrospective.finish_if_done``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update

from openlfr.alerts import outbox
from openlfr.alerts.dispatch import AlertDispatcher
from openlfr.clock import utc_now
from openlfr.runtime.camera_health import CameraStateChanged
from openlfr.services import deployments, retrospective
from openlfr.services.context import Context
from openlfr.store import Store
from openlfr.store.governance_models import Deployment
from openlfr.store.progress_models import camera_notes, claim, save_camera_state, save_progress
from openlfr.stream.runner import CameraState
from openlfr.text import first_line
from openlfr.urls import redact_text

log = logging.getLogger(__name__)

FLUSH_S = 2.0  # how often a camera adds its counts to the deployment's record
BOOKS_S = 0.5  # how often the bookkeeping thread looks for notes, counts and audit entries to write
COUNT_KEYS = ("decoded", "faces_seen", "tracks", "alerts")


def error_line(exc: BaseException) -> str:
    """An error's type and first line, for the run's notes, audit entries and ``/health``."""
    return f"{type(exc).__name__}: {first_line(exc)}"[:300]


@dataclass(frozen=True)
class RunLink:
    """What the books need of the run they keep: whether its pipeline thread still runs, its stop and abandon
    events, what else to look at each round while it runs (``tick``), what to do when the camera's lease is lost,
    and what to do once everything is written."""

    pipeline_alive: Callable[[], bool]
    tick: Callable[[], None]
    stopping: threading.Event
    abandon: threading.Event
    lease_lost: Callable[[str], None]
    finished: Callable[[], None]


class Books:
    """A run's bookkeeping, written on its own thread (``start``)."""

    def __init__(
        self,
        store: Store,
        ctx: Context,
        deployment_id: int,
        camera: str | None,
        holder: str | None,
        lease_s: float,
        link: RunLink,
    ) -> None:
        self.store, self.ctx, self.deployment_id, self.camera, self.holder = store, ctx, deployment_id, camera, holder
        self.lease_s, self.link = lease_s, link
        self.dispatcher: AlertDispatcher | None = None  # the run's, once its first pipeline is built
        self.retrospective = False  # a retrospective search also records its progress with the counts
        self.thread: threading.Thread | None = None
        self.database_error: str | None = None  # the last write the database refused, until one works
        self.notes: dict[str, str] = {}
        self._renewed_at = time.monotonic()
        self._note_dirty = False
        self._audits: list[tuple[str, dict[str, Any]]] = []
        self._camera_events: list[CameraStateChanged] = []  # changes of camera state, not yet written
        self._done_counts: dict[str, dict[str, int]] = {}  # of the pipelines that ran before (restarts)
        self._live_counts: dict[str, dict[str, int]] = {}  # of the pipeline running now
        self._flushed: dict[str, dict[str, int]] = {}
        self._last_flush = 0.0
        self._lock = threading.Lock()
        self._down_since: float | None = None  # epoch seconds: the database has not answered since
        # camera -> (media time analysed to, next track id, alerts handed to the dispatcher by then, coverage)
        self._progress: dict[str, tuple[float, int, int, tuple[int, float, float]]] = {}
        self._saved_progress: dict[str, tuple[float, int, tuple[int, float, float]]] = {}
        self.counted_before: dict[str, tuple[int, float]] = {}  # camera -> (frames, gap_s) its earlier runs stored

    def start(self) -> None:
        self.thread = threading.Thread(target=self._keep, name=f"openlfr-books-{self.deployment_id}", daemon=True)
        self.thread.start()

    def note(self, camera: str, message: str) -> None:
        """What the operator should know about a camera, on the deployment's page (any URL in it redacted)."""
        message = redact_text(message)
        text = message if message.startswith("camera") or not camera else f"camera {camera}: {message}"
        with self._lock:
            self.notes[camera] = text
            self._note_dirty = True

    @property
    def alive(self) -> bool:
        """Still writing what it holds."""
        return self.thread is not None and self.thread.is_alive()

    def notes_now(self) -> dict[str, str]:
        with self._lock:
            return dict(self.notes)

    def incident(self, action: str, text: str) -> None:
        self.note("", text)
        self.audit(action, {"what": text})

    def database_trouble(self, error: str | None) -> None:
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

    def camera_changed(self, event: CameraStateChanged) -> None:
        """A camera's state changed: stored, audited and announced by the bookkeeping thread."""
        health = event.health
        log.log(
            logging.INFO if health.state.up else logging.WARNING,
            "deployment %d: camera %s is %s (%s)",
            self.deployment_id,
            event.camera,
            health.state,
            health.reason,
        )
        with self._lock:
            self._camera_events.append(event)

    def _write_camera_states(self) -> None:
        while self._camera_events:
            event = self._camera_events[0]
            health = event.health
            with self.store.session() as db:
                save_camera_state(db, self.deployment_id, event.camera, health.state.value, health.since, health.reason)
                self.ctx.audit(db, "camera.state_changed", f"deployment:{self.deployment_id}", event.payload())
                # The deployment's sinks that subscribe to camera events hear of it, in the same transaction.
                outbox.enqueue(db, self.deployment_id, "camera", event.payload(), key=event.key)
            with self._lock:
                self._camera_events.pop(0)

    def audit(self, action: str, details: dict[str, Any]) -> None:
        with self._lock:
            self._audits.append((action, {**details, "at": utc_now().isoformat()}))

    def _keep(self) -> None:
        link = self.link
        while True:
            finished = not link.pipeline_alive()
            if not finished:
                self._renew_lease()
                if not link.stopping.is_set():
                    link.tick()
            clean = self._write_books(force=finished)
            if (finished and clean) or link.abandon.is_set():
                break
            time.sleep(BOOKS_S)
        link.finished()

    def _renew_lease(self) -> None:
        """Keep the camera's lease; stop the camera when it is lost, or cannot be renewed before it runs out."""
        if self.camera is None or self.holder is None or self.link.stopping.is_set():
            return
        if time.monotonic() - self._renewed_at < self.lease_s / 6:
            return
        try:
            with self.store.session() as db:
                held = claim(db, self.deployment_id, self.camera, self.holder, self.lease_s)
        except Exception as exc:
            if time.monotonic() - self._renewed_at < self.lease_s * 0.9:
                return  # (the bookkeeping reports the database's trouble)
            reason = f"cannot renew the lease of camera {self.camera} ({error_line(exc)}): stopped here"
        else:
            if held:
                self._renewed_at = time.monotonic()
                return
            reason = f"camera {self.camera} is held by another worker now: stopped here"
        log.warning("deployment %d: %s", self.deployment_id, reason)
        self.note("", reason)
        self.link.lease_lost(reason)

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
            self._write_camera_states()
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
            self.database_error = error_line(exc)
            self.database_trouble(self.database_error)
            return False
        if self.database_error is not None:
            log.warning("deployment %d: the database takes the run's record again", self.deployment_id)
            self.database_error = None
            self.database_trouble(None)
        with self._lock:
            return not self._note_dirty and not self._audits and not self._camera_events and self._counts_flushed()

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

    def end_counts(self, final: dict[str, dict[str, int]]) -> None:
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
                name: (media, next_id, coverage)
                for name, (media, next_id, handed, coverage) in self._progress.items()
                if handed <= settled and self._saved_progress.get(name) != (media, next_id, coverage)
            }
        for name, (media, next_id, coverage) in due.items():
            with self.store.session() as db:
                save_progress(db, self.deployment_id, name, media, next_id, coverage)
            self._saved_progress[name] = (media, next_id, coverage)

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
        if self.retrospective:
            with self.store.session() as db:
                retrospective.record_progress(db, self.ctx, self.deployment_id)

    def on_stats(self, states: dict[str, CameraState]) -> None:
        for name, state in states.items():
            if state.ready and self.notes.get(name, "").endswith("starting"):
                self.note(name, "running")
        held = self.dispatcher.status() if self.dispatcher is not None else None
        handed = held.held + held.written + held.lost if held is not None else 0
        with self._lock:
            self._live_counts = {name: state.counters.as_dict() for name, state in states.items()}
            for name, state in states.items():
                if state.analysed_to >= 0:
                    # A file's frames and gaps add to its earlier runs' (the overlap of a resume is not recounted).
                    frames, covered, gaps = state.coverage()
                    before_frames, before_gaps = self.counted_before.get(name, (0, 0.0))
                    coverage = (before_frames + frames, covered, before_gaps + gaps)
                    self._progress[name] = (state.analysed_to, state.next_track_id, handed, coverage)
