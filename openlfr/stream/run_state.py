"""What a pipeline run knows of its cameras while it runs and when it ends: counts, latency, errors, resume points."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from openlfr.stream.source import CameraConfig, FileReading
from openlfr.stream.stats import CameraCounters, LatencyHistogram


@dataclass(frozen=True)
class CameraResume:
    """Where a camera's earlier runs left off: its next track id and each person's last alert (pipeline clock)."""

    next_track_id: int = 1
    last_alerts: dict[str, float] = field(default_factory=dict)


@dataclass
class CameraState:
    camera: CameraConfig
    capture_counters: CameraCounters = field(default_factory=CameraCounters)
    worker_counters: CameraCounters = field(default_factory=CameraCounters)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    error: str | None = None
    ready: bool = False
    finished: bool = False
    first_frame_at: float | None = None
    last_frame_at: float | None = None
    analysed_to: float = -1.0  # media time of the last frame analysed (its alerts already handed on)
    next_track_id: int = 1
    analysis_cpu_s: float = 0.0  # CPU time of the camera's analysis process, its detector process's included
    detector_cpu_s: float = 0.0  # of which: its detector process's
    capture_cpu_s: float = 0.0  # CPU time of its capture thread (demuxing, decoding, copying into the ring)
    reading: FileReading = field(default_factory=FileReading)  # a file's coverage, from the frames decoded

    def coverage(self) -> tuple[int, float, float]:
        """A file's (frames newly decoded, seconds from its start to the end of the last frame analysed, seconds
        skipped on the way), from the frames themselves; frames an earlier run counted are not counted again."""
        reading = self.reading
        if self.analysed_to < 0:
            return reading.decoded, 0.0, reading.gap_s
        return reading.decoded, max(0.0, self.analysed_to - reading.start_s + reading.frame_s), reading.gap_s

    @property
    def counters(self) -> CameraCounters:
        merged = CameraCounters(**self.worker_counters.as_dict())
        merged.decoded = self.capture_counters.decoded
        merged.skipped = self.capture_counters.skipped
        merged.reconnects = self.capture_counters.reconnects
        merged.dropped += self.capture_counters.dropped
        merged.errors = self.capture_counters.errors + self.worker_counters.errors
        return merged


@dataclass
class RunSummary:
    cameras: dict[str, CameraState]
    elapsed_s: float

    @property
    def counters(self) -> CameraCounters:
        return sum((state.counters for state in self.cameras.values()), CameraCounters())

    @property
    def latency(self) -> LatencyHistogram:
        return sum((state.latency for state in self.cameras.values()), LatencyHistogram())

    @property
    def errors(self) -> dict[str, str]:
        return {name: state.error for name, state in self.cameras.items() if state.error}

    @property
    def fps(self) -> float:
        """Frames decoded per second of wall time, over all cameras."""
        return self.counters.decoded / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def line(self) -> dict[str, Any]:
        """The `openlfr scan --json` summary line (these keys exactly; the interface of issue 4)."""
        counters, latency = self.counters, self.latency
        p50, p95 = latency.percentile(50), latency.percentile(95)
        return {
            "type": "summary",
            "frames": counters.decoded,
            "faces_seen": counters.faces_seen,
            "tracks": counters.tracks,
            "alerts": counters.alerts,
            "fps": round(self.fps, 2),
            "latency_ms_p50": None if p50 is None else round(p50, 1),
            "latency_ms_p95": None if p95 is None else round(p95, 1),
        }
