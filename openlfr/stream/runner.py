"""Several cameras at once: capture threads here, one analysis process per camera, results back by queue.

``PipelineRunner.run()`` returns when every camera has finished (files at their end, live cameras when
stopped or given up on). A camera that cannot be opened or read is reported through ``on_error`` and the
others carry on. Alerts come back to this process, where ``on_alert`` commits and announces them: the
database and the sinks live in one place, whatever the number of cameras.

The caller decides whether matching is allowed (``may_match``, polled every ``gate_interval_s``): while it
says no, workers still count faces but embed nobody.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from openlfr.alerts.record import AlertFound
from openlfr.settings import Settings
from openlfr.stream.evidence import EvidenceRule
from openlfr.stream.pipeline import Matcher
from openlfr.stream.run_state import CameraResume, CameraState, RunSummary
from openlfr.stream.source import CameraConfig, Capture, CaptureOptions, SourceError, SourceKind
from openlfr.stream.stats import LatencyHistogram
from openlfr.stream.trace import TrackPaths
from openlfr.stream.worker import (
    FrameRing,
    FrameView,
    Ready,
    StatsReport,
    Ticket,
    WorkerFailed,
    WorkerSpec,
    analysis_main,
)
from openlfr.watchlist.second_opinion import SecondGallery

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunnerOptions:
    realtime: bool = False  # files paced to their timestamps (live sources always are)
    slots: int = 3  # frames in flight per camera (one analysed, the rest waiting)
    report_interval_s: float = 1.0
    ready_timeout_s: float = 180.0  # model loading in a new process, on a busy machine
    gate_interval_s: float = 0.5
    view_interval_s: float = 0.0
    capture: CaptureOptions = field(default_factory=CaptureOptions)
    match_until: float | None = None  # wall-clock epoch seconds; workers refuse to match after it
    trace_tracks: bool = False  # benchmarks: each camera's embedded tracks' paths to ``on_tracks`` when it stops


class _CameraRun:
    """The parent's side of one camera: its queues, worker process, capture thread and ring."""

    def __init__(self, ctx: Any, state: CameraState, spec: WorkerSpec, events: Any, remote_detection: bool) -> None:
        self.state = state
        self.spec = spec
        self.tickets = ctx.Queue()
        self.freed = ctx.Queue()
        self.matching = ctx.Event()
        self.stop = threading.Event()
        self.detector: Any = None
        self.detector_queues: tuple[Any, Any] | None = None
        if remote_detection:
            from openlfr.stream.detector import DetectorSpec, detector_main

            self.detector_queues = (ctx.Queue(), ctx.Queue())
            self.detector = ctx.Process(
                target=detector_main,
                args=(DetectorSpec(spec.settings, spec.settings.stream.detect_upsample), *self.detector_queues),
                name=f"openlfr-detector-{state.camera.name}",
                daemon=True,
            )
        self.process = ctx.Process(
            target=analysis_main,
            args=(spec, self.tickets, self.freed, events, self.matching, self.detector_queues),
            name=f"openlfr-camera-{state.camera.name}",
            daemon=True,
        )
        self.thread: threading.Thread | None = None
        self.rings: list[FrameRing] = []

    def start(self) -> None:
        if self.detector is not None:
            self.detector.start()
        self.process.start()

    def stop_detector(self) -> None:
        if self.detector is None or self.detector_queues is None:
            return
        if self.detector.is_alive():
            self.detector_queues[0].put(None)
            self.detector.join(timeout=5.0)
        if self.detector.is_alive():
            self.detector.terminate()
            self.detector.join(timeout=5.0)

    def close(self) -> None:
        for ring in self.rings:
            ring.close()
        self.rings.clear()
        for q in (self.tickets, self.freed, *(self.detector_queues or ())):
            q.close()
            q.join_thread()


class PipelineRunner:
    def __init__(
        self,
        cameras: Sequence[CameraConfig],
        settings: Settings,
        matcher: Matcher | None,
        rule: EvidenceRule | None,
        *,
        on_alert: Callable[[AlertFound], None],
        on_error: Callable[[str, str], None] | None = None,
        on_notice: Callable[[str, str], None] | None = None,
        on_stats: Callable[[dict[str, CameraState]], None] | None = None,
        on_view: Callable[[FrameView], None] | None = None,
        on_tracks: Callable[[TrackPaths], None] | None = None,
        may_match: Callable[[], bool] = lambda: True,
        options: RunnerOptions | None = None,
        resume: Mapping[str, CameraResume] | None = None,
        second: SecondGallery | None = None,
    ) -> None:
        names = [c.name for c in cameras]
        if len(set(names)) != len(names):
            raise ValueError(f"camera names must be unique: {names}")
        self.cameras = list(cameras)
        self.settings = settings
        self.matcher = matcher
        self.rule = rule
        self.second = second  # the watchlist's second opinion, if it has one (stream/second_look.py)
        self.on_alert = on_alert
        self.on_error = on_error or (lambda camera, message: log.error("%s", message))
        self.on_notice = on_notice or (lambda camera, message: log.warning("%s", message))
        self.on_stats = on_stats
        self.on_view = on_view
        self.on_tracks = on_tracks
        self.may_match = may_match
        self.options = options or RunnerOptions()
        self.resume = dict(resume or {})
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask every camera to stop (thread-safe); ``run`` then returns with the counts so far."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # ----- capture (one thread per camera) -----

    def _capture(self, run: _CameraRun) -> None:
        state, options = run.state, self.options
        live = state.camera.kind is not SourceKind.FILE
        drop = live or options.realtime
        capture_options = CaptureOptions(**{**options.capture.__dict__, "realtime": options.realtime})
        capture = Capture(state.camera, capture_options, lambda message: self.on_notice(state.camera.name, message))
        state.reading = capture.reading
        ring: FrameRing | None = None
        free: list[int] = []
        try:
            for frame in capture.frames(run.stop):
                now = time.monotonic()
                state.capture_cpu_s = time.thread_time()
                state.first_frame_at = state.first_frame_at or now
                state.last_frame_at = now
                state.capture_counters.decoded = capture.decoded
                state.capture_counters.skipped = capture.skipped
                state.capture_counters.reconnects = capture.reconnects
                if not run.process.is_alive():
                    break
                needed = frame.format.nbytes
                if ring is None or needed > ring.slot_bytes:
                    ring = FrameRing.create(options.slots, needed)
                    run.rings.append(ring)
                    free = list(range(options.slots))
                self._collect_freed(run, ring, free, block=False)
                if not free:
                    if drop:
                        state.capture_counters.dropped += 1
                        continue
                    while not free and not run.stop.is_set() and run.process.is_alive():
                        self._collect_freed(run, ring, free, block=True)
                    if not free:
                        break
                slot = free.pop()
                frame.write_i420(ring.slot(slot))
                run.tickets.put(
                    Ticket(
                        ring.name,
                        ring.slots,
                        ring.slot_bytes,
                        slot,
                        frame.format,
                        frame.index,
                        frame.clock,
                        frame.media_time,
                        frame.arrival,
                    )
                )
            state.capture_counters.decoded = capture.decoded
            state.capture_counters.skipped = capture.skipped
            state.capture_counters.reconnects = capture.reconnects
            state.capture_cpu_s = time.thread_time()
        except SourceError as exc:
            state.error = str(exc)
            state.capture_counters.errors += 1
            self.on_error(state.camera.name, str(exc))
        except Exception as exc:  # a bug must not take the other cameras down
            state.error = f"camera {state.camera.name!r}: capture failed: {type(exc).__name__}: {exc}"
            state.capture_counters.errors += 1
            log.exception("capture of %s failed", state.camera.name)
            self.on_error(state.camera.name, state.error)
        finally:
            run.tickets.put(None)

    @staticmethod
    def _collect_freed(run: _CameraRun, ring: FrameRing, free: list[int], block: bool) -> None:
        while True:
            try:
                name, slot = run.freed.get(timeout=0.2) if block else run.freed.get_nowait()
            except queue.Empty:
                return
            if name == ring.name:
                free.append(slot)
            block = False

    # ----- the event loop -----

    def run(self) -> RunSummary:
        ctx = multiprocessing.get_context("spawn")
        events = ctx.Queue()
        states = {c.name: CameraState(c) for c in self.cameras}
        runs: dict[str, _CameraRun] = {}
        started = time.monotonic()
        for camera in self.cameras:
            live = camera.kind is not SourceKind.FILE
            spec = WorkerSpec(
                camera=camera,
                settings=self.settings,
                matcher=self.matcher,
                rule=self.rule,
                drop_stale=live or self.options.realtime,
                report_interval_s=self.options.report_interval_s,
                view_interval_s=self.options.view_interval_s if self.on_view else 0.0,
                match_until=self.options.match_until,
                next_track_id=self.resume.get(camera.name, CameraResume()).next_track_id,
                last_alerts=dict(self.resume.get(camera.name, CameraResume()).last_alerts),
                trace_tracks=self.options.trace_tracks,
                second=self.second,
                ready_timeout_s=self.options.ready_timeout_s,
            )
            remote = (live or self.options.realtime) and self.settings.stream.detector_process
            run = runs[camera.name] = _CameraRun(ctx, states[camera.name], spec, events, remote)
            if self.may_match():
                run.matching.set()
            run.start()
        try:
            self._loop(runs, events, started)
        except BaseException:  # Ctrl-C or a failing callback: the camera processes still go, with their counts
            self._stop.set()
            raise
        finally:
            self._shutdown(runs, events)
        first = [s.first_frame_at for s in states.values() if s.first_frame_at is not None]
        last = [s.last_frame_at for s in states.values() if s.last_frame_at is not None]
        elapsed = (max(last) - min(first)) if first and last else time.monotonic() - started
        return RunSummary(states, max(elapsed, 1e-6))

    def _loop(self, runs: dict[str, _CameraRun], events: Any, started: float) -> None:
        last_gate = time.monotonic()
        while not all(r.state.finished for r in runs.values()):
            if self._stop.is_set():
                for run in runs.values():
                    run.stop.set()
            try:
                message = events.get(timeout=0.2)
            except queue.Empty:
                message = None
            if message is not None:
                self._handle(runs, message)
            now = time.monotonic()
            if now - last_gate >= self.options.gate_interval_s:
                last_gate = now
                allowed = bool(self.may_match())
                for run in runs.values():
                    (run.matching.set if allowed else run.matching.clear)()
            for run in runs.values():
                state = run.state
                if state.finished:
                    continue
                if not run.process.is_alive():
                    if run.process.exitcode is not None and message is None:
                        # The worker is gone without its final report (which would have been read by now).
                        self._give_up(
                            run, f"the analysis process stopped unexpectedly (exit code {run.process.exitcode})"
                        )
                elif not state.ready and now - started > self.options.ready_timeout_s:
                    self._give_up(run, f"the analysis did not start within {self.options.ready_timeout_s:.0f} s")

    def _give_up(self, run: _CameraRun, why: str) -> None:
        """The camera is finished: its first error (this one, unless an earlier one was told) goes to on_error."""
        state = run.state
        if state.error is None:
            state.error = f"camera {state.camera.name!r}: {why}"
            self.on_error(state.camera.name, state.error)
        state.finished = True
        run.stop.set()

    def _handle(self, runs: dict[str, _CameraRun], message: object) -> None:
        if isinstance(message, AlertFound):
            self.on_alert(message)
            return
        name = getattr(message, "camera", None)
        run = runs.get(str(name))
        if run is None:
            return
        state = run.state
        if isinstance(message, Ready):
            state.ready = True
            run.thread = threading.Thread(target=self._capture, args=(run,), name=f"capture-{name}", daemon=True)
            run.thread.start()
        elif isinstance(message, StatsReport):
            state.worker_counters = message.counters
            state.latency = LatencyHistogram.from_sparse(
                message.latency, message.latency_total_ms, message.latency_max_ms
            )
            state.analysis_cpu_s = message.cpu_s
            state.detector_cpu_s = message.detector_cpu_s
            state.analysed_to = max(state.analysed_to, message.media_time)
            state.next_track_id = max(state.next_track_id, message.next_track_id)
            if message.final:
                state.finished = True
            if self.on_stats is not None:
                self.on_stats({n: r.state for n, r in runs.items()})
        elif isinstance(message, WorkerFailed):
            state.worker_counters.errors += 1
            if state.error is None:
                state.error = message.message
                self.on_error(state.camera.name, message.message)
            run.stop.set()
            if not state.ready:
                state.finished = True
        elif isinstance(message, FrameView) and self.on_view is not None:
            self.on_view(message)
        elif isinstance(message, TrackPaths) and self.on_tracks is not None:
            self.on_tracks(message)

    def _drain(self, runs: dict[str, _CameraRun], events: Any, timeout: float) -> None:
        while True:
            try:
                message = events.get(timeout=timeout)
            except (queue.Empty, OSError, ValueError):
                return
            self._handle(runs, message)

    def _shutdown(self, runs: dict[str, _CameraRun], events: Any) -> None:
        for run in runs.values():
            run.stop.set()
        for run in runs.values():
            if run.thread is not None:
                run.thread.join(timeout=10.0)
            elif run.process.is_alive():
                run.tickets.put(None)
        # Keep reading while the workers finish: a worker cannot exit before its queued messages (a final
        # report, an alert raised on the last frame) are read, and they still count.
        deadline = time.monotonic() + 15.0
        while any(r.process.is_alive() for r in runs.values()) and time.monotonic() < deadline:
            self._drain(runs, events, 0.1)
        for run in runs.values():
            if run.process.is_alive():
                run.process.terminate()
                run.process.join(timeout=5.0)
            run.stop_detector()
        self._drain(runs, events, 0.05)
        for run in runs.values():
            run.close()
        events.close()
