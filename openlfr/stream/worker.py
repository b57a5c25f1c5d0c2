"""The analysis process of one camera, and the shared-memory ring that brings it frames.

Why a process per camera: dlib's detector holds Python's GIL for the whole call (150 ms on a 1080p frame),
so threads would stall decoding and every other camera. Decoding stays in the parent (FFmpeg threads, no
GIL trouble); each camera's analysis runs in its own process, on its own core when there is one.

Frames cross in shared memory, never through a pipe: the parent writes a decoded frame into a free slot of
the camera's :class:`FrameRing` and sends a small :class:`Ticket`; the worker analyses the slot and hands
it back. A ring has a few slots, so at most that many frames wait: a short burst of work (a crowd walking in,
every face wanting its first embedding) is worked off in order, costing latency rather than frames; under
lasting load the parent drops new frames (no free slot) and the worker skips frames that waited longer than
``max_lag_s`` (:class:`LiveBacklog`), so the backlog and the latency are bounded by construction. Files read
as fast as possible are the exception: there the parent waits for a slot and every frame is analysed, so
results do not depend on the machine's load.
"""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from typing import Any

import numpy as np

from openlfr.face_models import spec_for_model_id
from openlfr.settings import Settings
from openlfr.stream.evidence import EvidenceRule
from openlfr.stream.frames import FrameFormat, YuvFrame
from openlfr.stream.lifeline import die_with_parent
from openlfr.stream.pipeline import CameraPipeline, Matcher, TrackBox
from openlfr.stream.second_look import SecondOpinion
from openlfr.stream.source import CameraConfig
from openlfr.stream.stats import CameraCounters
from openlfr.stream.trace import PathRecorder
from openlfr.vision.engine import FaceEngine, second_engine
from openlfr.watchlist.second_opinion import SecondGallery


class FrameRing:
    """``slots`` frame buffers of ``slot_bytes`` each in one shared-memory block."""

    def __init__(self, block: shared_memory.SharedMemory, slots: int, slot_bytes: int, owner: bool) -> None:
        self.block = block
        self.slots = slots
        self.slot_bytes = slot_bytes
        self.owner = owner
        self._array = np.ndarray((slots, slot_bytes), dtype=np.uint8, buffer=block.buf)

    @property
    def name(self) -> str:
        return self.block.name

    @classmethod
    def create(cls, slots: int, slot_bytes: int) -> FrameRing:
        return cls(shared_memory.SharedMemory(create=True, size=max(1, slots * slot_bytes)), slots, slot_bytes, True)

    @classmethod
    def attach(cls, name: str, slots: int, slot_bytes: int) -> FrameRing:
        # Workers are spawned and share the parent's resource tracker: the parent's unlink settles the block's
        # registration, so nothing is unregistered here (that would make the parent's unlink complain).
        block = shared_memory.SharedMemory(name=name)
        return cls(block, slots, slot_bytes, False)

    def slot(self, index: int) -> np.ndarray:
        return self._array[index]

    def close(self) -> None:
        del self._array
        self.block.close()
        if self.owner:
            with contextlib.suppress(FileNotFoundError):
                self.block.unlink()


# ----- messages (all picklable) -----


@dataclass(frozen=True)
class Ticket:
    """A frame waiting in a ring slot."""

    ring: str
    slots: int
    slot_bytes: int
    slot: int
    format: FrameFormat
    index: int
    clock: float
    media_time: float
    arrival: float


@dataclass(frozen=True)
class Ready:
    camera: str


@dataclass(frozen=True)
class StatsReport:
    camera: str
    counters: CameraCounters
    latency: dict[int, int]  # sparse histogram buckets
    latency_total_ms: float
    latency_max_ms: float
    final: bool = False
    cpu_s: float = 0.0  # CPU time the worker process has used so far (all its threads), its detector's included
    media_time: float = -1.0  # of the last frame analysed (its alerts were sent before this report); -1: none
    next_track_id: int = 1  # the tracker's next id
    detector_cpu_s: float = 0.0  # of which: its detector process's (as of its last answer)


@dataclass(frozen=True)
class FrameView:
    """A picture of the current frame for a live view (in memory only; the consumer blurs unknown faces)."""

    camera: str
    rgb: np.ndarray = field(repr=False)
    scale: float  # of the picture relative to the frame: box coordinates times this
    boxes: list[TrackBox]


@dataclass(frozen=True)
class WorkerFailed:
    camera: str
    message: str


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs, sent once when it starts."""

    camera: CameraConfig
    settings: Settings  # its ``stream`` section configures the pipeline
    matcher: Matcher | None
    rule: EvidenceRule | None
    drop_stale: bool  # skip to the newest waiting frame (live and realtime sources)
    report_interval_s: float = 1.0
    view_interval_s: float = 0.0  # 0 = no live view pictures
    view_max_width: int = 1280
    match_until: float | None = None  # wall-clock epoch seconds after which nothing is matched, whatever else says
    next_track_id: int = 1  # a resumed camera's tracks continue its earlier runs' ids
    last_alerts: dict[str, float] = field(default_factory=dict)  # person -> clock of their last alert (cooldown)
    trace_tracks: bool = False  # benchmarks: send the embedded tracks' paths when stopping (stream/trace.py)
    second: SecondGallery | None = None  # the watchlist's second opinion (stream/second_look.py)
    ready_timeout_s: float = 180.0  # for the detector process to load its model (a busy machine)


class LiveBacklog:
    """The frames a live camera has waiting, oldest first: which one it analyses next.

    A short backlog (a frame with several new faces to embed takes longer than a frame interval) is worked off
    in order, so a burst costs latency, not frames; a frame that has waited longer than ``max_lag_s`` is given
    back unanalysed when a newer one waits, so latency stays bounded however long the machine is overloaded."""

    def __init__(self, tickets: Any, max_lag_s: float, give_back: Callable[[Ticket], None]) -> None:
        self.tickets, self.max_lag_s, self.give_back = tickets, max_lag_s, give_back
        self.waiting: collections.deque[Ticket] = collections.deque()
        self.ended = False  # the parent has sent None: no frame after those waiting

    def next(self, timeout: float) -> Ticket | None:
        """The next frame to analyse; None once the source has ended and nothing waits (queue.Empty on timeout)."""
        self._read_ahead()
        if not self.waiting:
            if self.ended:
                return None
            first = self.tickets.get(timeout=timeout)
            if first is None:
                return None
            self.waiting.append(first)
        while len(self.waiting) > 1 and time.monotonic() - self.waiting[0].arrival > self.max_lag_s:
            self.give_back(self.waiting.popleft())
        return self.waiting.popleft()

    def _read_ahead(self) -> None:
        while not self.ended:
            try:
                ticket = self.tickets.get_nowait()
            except queue.Empty:
                return
            if ticket is None:
                self.ended = True
            else:
                self.waiting.append(ticket)


def _report(pipeline: CameraPipeline, final: bool = False, media_time: float = -1.0) -> StatsReport:
    histogram = pipeline.latency
    helper_cpu = getattr(pipeline.remote, "cpu_s", 0.0) if pipeline.remote is not None else 0.0
    return StatsReport(
        pipeline.camera.name,
        CameraCounters(**pipeline.counters.as_dict()),
        histogram.sparse(),
        histogram.total_ms,
        histogram.max_ms,
        final,
        time.process_time() + helper_cpu,
        media_time,
        pipeline.tracker.next_id,
        helper_cpu,
    )


def analysis_main(
    spec: WorkerSpec,
    tickets: Any,
    freed: Any,
    events: Any,
    matching: Any,
    detector_queues: tuple[Any, Any] | None = None,
) -> None:
    """The worker process: analyse tickets until the parent sends None. Reports through ``events``.

    ``detector_queues``: the (requests, results) queues of a detector process for whole-picture detection."""
    die_with_parent("openlfr-camera")
    # The parent coordinates shutdown (Ctrl-C included): an interrupt here would lose the final counts.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    name = spec.camera.name
    try:
        from openlfr.vision.engine import build_detector, build_engine

        # One camera's analysis is sequential work: ONNX Runtime's own thread pool (one thread per core by default)
        # would only compete with the other cameras and with decoding, so a worker embeds on one thread.
        settings = spec.settings
        if settings.onnx_threads == 0:
            settings = settings.model_copy(update={"onnx_threads": 1})
        engine = build_engine(settings)
        # The configured detector for track-local searches (the pipeline scales each window itself).
        detector = build_detector(settings, upsample=spec.settings.stream.detect_upsample, scale=1.0)

        def may_match() -> bool:
            if spec.match_until is not None and time.time() >= spec.match_until:
                return False
            return bool(matching.is_set())

        pipeline = CameraPipeline(
            spec.camera,
            spec.settings.stream,
            engine,
            detector,
            spec.matcher,
            spec.rule,
            may_match,
            second=second_opinion(engine, settings, spec.second),
        )
        pipeline.live = spec.drop_stale
        pipeline.resume(spec.next_track_id, spec.last_alerts)
        from openlfr.stream.detector import RemoteDetector, warm_up

        # The first frames should not wait for ONNX Runtime's first runs: track windows of both sizes, one chip.
        side = spec.settings.stream.window_face_px or detector.search_face_px
        warm_up(detector, [(2 * side, 2 * side), (2 * detector.retry_face_px, 2 * detector.retry_face_px)])
        chip = engine.embedder.chip_size
        engine.embedder.embed(np.zeros((2, chip, chip, 3), np.uint8))
        if detector_queues is not None:
            remote = RemoteDetector(*detector_queues)
            remote.wait_ready(spec.ready_timeout_s)
            pipeline.remote = remote
    except Exception as exc:
        events.put(WorkerFailed(name, f"camera {name!r}: the analysis could not start: {exc}"))
        return
    events.put(Ready(name))
    rings: dict[str, FrameRing] = {}
    parent = os.getppid()
    last_report = time.monotonic()
    last_view = float("-inf")
    analysed_to = -1.0  # media time of the last frame analysed

    def report_if_due() -> None:
        nonlocal last_report
        now = time.monotonic()
        if now - last_report >= spec.report_interval_s:
            last_report = now
            events.put(_report(pipeline, media_time=analysed_to))

    def give_back(stale: Ticket) -> None:
        freed.put((stale.ring, stale.slot))
        pipeline.counters.dropped += 1

    recorder = PathRecorder() if spec.trace_tracks else None
    backlog = LiveBacklog(tickets, spec.settings.stream.max_lag_s, give_back) if spec.drop_stale else None
    try:
        while True:
            try:
                ticket = (
                    backlog.next(spec.report_interval_s) if backlog else tickets.get(timeout=spec.report_interval_s)
                )
            except queue.Empty:
                if os.getppid() != parent:  # the parent died without saying goodbye
                    break
                report_if_due()
                continue
            if ticket is None:
                break
            ring = rings.get(ticket.ring)
            if ring is None:
                ring = rings[ticket.ring] = FrameRing.attach(ticket.ring, ticket.slots, ticket.slot_bytes)
            frame = YuvFrame(ring.slot(ticket.slot), ticket.format)
            result = pipeline.process(frame, ticket.clock, ticket.arrival, ticket.media_time)
            if recorder is not None:
                active = pipeline.tracker.active
                embedded = {b.track_id for b in result.boxes if b.track_id in active and active[b.track_id].embeddings}
                recorder.add(ticket.media_time, result.boxes, embedded)
            if spec.view_interval_s > 0 and ticket.clock - last_view >= spec.view_interval_s:
                last_view = ticket.clock
                picture, scale = frame.preview(spec.view_max_width)
                events.put(FrameView(name, picture, scale, result.boxes))
            del frame
            freed.put((ticket.ring, ticket.slot))
            for alert in result.alerts:
                events.put(alert)
            analysed_to = ticket.media_time
            report_if_due()
    except Exception as exc:
        events.put(WorkerFailed(name, f"camera {name!r}: analysis failed: {type(exc).__name__}: {exc}"))
    finally:
        pipeline.finish()
        if recorder is not None:
            events.put(recorder.result(name))
        events.put(_report(pipeline, final=True, media_time=analysed_to))
        if pipeline.remote is not None:
            pipeline.remote.close()  # type: ignore[attr-defined]
        for ring in rings.values():
            ring.close()


def second_opinion(engine: FaceEngine, settings: Settings, gallery: SecondGallery | None) -> SecondOpinion | None:
    """The second model's engine beside ``engine`` for the watchlist's second references (whatever the setting
    says now: a deployment frozen with them was authorised at the fused score's threshold)."""
    if gallery is None:
        return None
    spec = spec_for_model_id(gallery.model_id)
    if spec is None:
        raise ValueError(f"no registered embedder makes {gallery.model_id} embeddings")
    second = second_engine(engine, settings.model_copy(update={"second_opinion": spec.name}), stills=False)
    if second is None:
        raise ValueError(f"{spec.name} cannot give a second opinion beside {engine.model_id}")
    return SecondOpinion(gallery, second)
