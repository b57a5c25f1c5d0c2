"""A deployment run's books: what it tells the operator (per-camera notes, audit entries), what it counted (frames,
faces seen, tracks, alerts: the only trace of the faces that raised no alert), where each camera got to (for a
resume), and its camera's lease. ``DeploymentRun`` (``openlfr.runtime.deployment_run``) keeps them in memory and
one bookkeeping thread per run writes them every ``BOOKS_S``, so a locked or absent database never stalls the
pipeline; what the database refuses waits, and the trouble is an incident (audited when it answers again).

A retrospective search's progress (seconds of footage analysed, from the cameras' stored progress) is written
with the counts; when every camera's file has been read to its end the search is recorded as processed
(``openlfr.services.retrospective.finish_if_done``).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update

from openlfr.alerts import outbox
from openlfr.alerts.dispatch import AlertDispatcher
from openlfr.clock import utc_now
from openlfr.runtime.camera_health import CameraStateChanged, CameraWatch
from openlfr.services import deployments, retrospective
from openlfr.services.context import Context
from openlfr.store import Store
from openlfr.store.governance_models import Deployment
from openlfr.store.progress_models import camera_notes, claim, release, save_camera_state, save_progress
from openlfr.stream.runner import CameraState
from openlfr.urls import redact_text

log = logging.getLogger(__name__)

FLUSH_S = 2.0  # how often a camera adds its counts to the deployment's record
BOOKS_S = 0.5  # how often the bookkeeping thread looks for notes, counts and audit entries to write
COUNT_KEYS = ("decoded", "faces_seen", "tracks", "alerts")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


class RunBooks:
    """The bookkeeping half of ``DeploymentRun`` (which sets these attributes)."""

    store: Store
    deployment_id: int
    camera: str | None
    holder: str | None
    ctx: Context
    lease_s: float
    retrospective: bool
    analysis_s: float
    source_ended: bool
    thread: threading.Thread | None
    runner: Any
    dispatcher: AlertDispatcher | None
    database_error: str | None
    notes: dict[str, str]
    _renewed_at: float
    _note_dirty: bool
    _audits: list[tuple[str, dict[str, Any]]]
    _done_counts: dict[str, dict[str, int]]
    _live_counts: dict[str, dict[str, int]]
    _flushed: dict[str, dict[str, int]]
    _last_flush: float
    _lock: threading.Lock
    _stop: threading.Event
    _abandon: threading.Event
    _down_since: float | None
    _progress: dict[str, tuple[float, int, int, tuple[int, float, float]]]
    _saved_progress: dict[str, tuple[float, int, tuple[int, float, float]]]
    _counted_before: dict[str, tuple[int, float]]
    cameras: CameraWatch
    _camera_events: list[CameraStateChanged]

    def note(self, camera: str, message: str) -> None:
        """What the operator should know about a camera, on the deployment's page (any URL in it redacted)."""
        message = redact_text(message)
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

    def _camera_changed(self, event: CameraStateChanged) -> None:
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

    def _audit(self, action: str, details: dict[str, Any]) -> None:
        with self._lock:
            self._audits.append((action, {**details, "at": utc_now().isoformat()}))

    def _keep_books(self) -> None:
        while True:
            finished = not (self.thread is not None and self.thread.is_alive())
            if not finished:
                self._renew_lease()
                if not self._stop.is_set():  # a run told to stop stops its frames: that is no stall
                    self.cameras.look()
            clean = self._write_books(force=finished)
            if (finished and clean) or self._abandon.is_set():
                break
            time.sleep(BOOKS_S)
        if self.camera is not None and self.holder is not None:
            try:
                with self.store.session() as db:
                    release(db, self.deployment_id, self.camera, self.holder, ended=self.source_ended)
                if self.retrospective and self.source_ended:
                    with self.store.session() as db:
                        retrospective.finish_if_done(db, self.ctx, self.deployment_id, self.analysis_s)
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
            reason = f"cannot renew the lease of camera {self.camera} ({first_line(exc)}): stopped here"
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
            self.database_error = first_line(exc)
            self._database_trouble(self.database_error)
            return False
        if self.database_error is not None:
            log.warning("deployment %d: the database takes the run's record again", self.deployment_id)
            self.database_error = None
            self._database_trouble(None)
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

    def _on_stats(self, states: dict[str, CameraState]) -> None:
        self.cameras.pipeline_reports(states)
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
                    before_frames, before_gaps = self._counted_before.get(name, (0, 0.0))
                    coverage = (before_frames + frames, covered, before_gaps + gaps)
                    self._progress[name] = (state.analysed_to, state.next_track_id, handed, coverage)
