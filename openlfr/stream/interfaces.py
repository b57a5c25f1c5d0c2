"""What a camera's pipeline talks to and what it answers: the watchlist it searches (``Matcher``), the
whole-picture detector beside it on live sources (``AsyncDetector``), and the result of one frame (its alerts and
the boxes a live view draws)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from openlfr.alerts.record import AlertFound
from openlfr.stream.frames import YuvFrame
from openlfr.vision.types import Box, Detection
from openlfr.watchlist.search import Candidate


class AsyncDetector(Protocol):
    """Whole-picture detection running beside the analysis (``openlfr.stream.detector.RemoteDetector``)."""

    def busy(self) -> bool: ...
    def submit(self, frame: YuvFrame, area: Box, clock: float, factor: float) -> None: ...
    def poll(self) -> tuple[float, list[Detection]] | None: ...


class Matcher(Protocol):
    """A watchlist to search (``openlfr.watchlist.search.Gallery`` fits): top-k people per probe, best first."""

    model_id: str

    def search(self, probes: np.ndarray, k: int = 5) -> Sequence[Sequence[Candidate]]: ...


@dataclass(frozen=True)
class TrackBox:
    """A face on the current frame, for a live view: where, and which track (whether its alert is committed is
    the viewer's to learn, from the committed-alert event)."""

    box: Box
    track_id: int


@dataclass
class FrameResult:
    alerts: list[AlertFound] = field(default_factory=list)
    boxes: list[TrackBox] = field(default_factory=list)
    full_detection: bool = False
