"""Live statistics: counters per camera and a bounded latency histogram that merges across processes."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np

# 1 ms buckets up to 10 s, then one overflow bucket: exact enough for percentiles, fixed size forever.
LATENCY_BUCKETS = 10_000


@dataclass
class LatencyHistogram:
    counts: np.ndarray = field(default_factory=lambda: np.zeros(LATENCY_BUCKETS + 1, np.int64))
    total_ms: float = 0.0
    max_ms: float = 0.0

    def add(self, milliseconds: float) -> None:
        value = max(0.0, milliseconds)
        self.counts[min(int(value), LATENCY_BUCKETS)] += 1
        self.total_ms += value
        self.max_ms = max(self.max_ms, value)

    def merge(self, other: LatencyHistogram) -> None:
        self.counts += other.counts
        self.total_ms += other.total_ms
        self.max_ms = max(self.max_ms, other.max_ms)

    def __add__(self, other: LatencyHistogram) -> LatencyHistogram:
        total = LatencyHistogram(self.counts.copy(), self.total_ms, self.max_ms)
        total.merge(other)
        return total

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0-100) in ms, to the bucket's upper edge; None when empty."""
        n = self.count
        if n == 0:
            return None
        rank = max(1, math.ceil(q / 100.0 * n))
        bucket = int(np.searchsorted(np.cumsum(self.counts), rank))
        return float(min(bucket + 1, self.max_ms)) if bucket < LATENCY_BUCKETS else self.max_ms

    def sparse(self) -> dict[int, int]:
        """Non-empty buckets only: what crosses a process boundary."""
        nonzero = np.nonzero(self.counts)[0]
        return {int(i): int(self.counts[i]) for i in nonzero}

    @classmethod
    def from_sparse(cls, buckets: dict[int, int], total_ms: float, max_ms: float) -> LatencyHistogram:
        histogram = cls()
        for index, count in buckets.items():
            histogram.counts[index] = count
        histogram.total_ms, histogram.max_ms = total_ms, max_ms
        return histogram


@dataclass
class CameraCounters:
    """Everything the pipeline keeps about the faces it saw: numbers."""

    decoded: int = 0  # frames out of the decoder
    skipped: int = 0  # above the camera's frame-rate cap, by design
    dropped: int = 0  # decoded but never analysed because analysis was busy (load shedding)
    processed: int = 0  # frames analysed
    detect_frames: int = 0  # of which: the whole picture searched for faces (the rest follow known tracks)
    faces_seen: int = 0  # face observations on processed frames
    tracks: int = 0  # faces followed from appearance to disappearance
    embeddings: int = 0  # faces embedded (the costly step, budgeted per track)
    alerts: int = 0
    suppressed: int = 0  # matches held back by the per-person cooldown
    reconnects: int = 0
    errors: int = 0

    def add(self, other: CameraCounters) -> None:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    def __add__(self, other: CameraCounters) -> CameraCounters:
        total = CameraCounters(**self.as_dict())
        total.add(other)
        return total

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
