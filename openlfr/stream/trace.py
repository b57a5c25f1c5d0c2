"""Where each embedded track went, for benchmarks that compare runs of the same footage (benchmarks/cameras.py).

A run with ``RunnerOptions.trace_tracks`` has each camera's analysis process note, for every face it follows,
the media time and box on each frame it analyses; when the camera stops, the paths of the tracks that were
embedded at least once come back to the runner as one :class:`TrackPaths` message. Two runs of one clip can then
be matched track by track (same media time, overlapping boxes): did the loaded run embed the faces one camera
alone embeds?

Positions and times only, never pixels, crops or embeddings; kept in memory, off unless a benchmark asks, and
the paths of tracks never embedded are dropped when the camera stops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from openlfr.stream.interfaces import TrackBox
from openlfr.vision.types import Box

# (media time, left, top, right, bottom): a tuple pickles small, and a camera sends tens of thousands of them
PathPoint = tuple[float, int, int, int, int]


@dataclass(frozen=True)
class TrackPaths:
    """A camera's embedded tracks: track id -> its path, in media time order."""

    camera: str
    paths: dict[int, list[PathPoint]]


@dataclass
class PathRecorder:
    """One camera's notes, fed each analysed frame's boxes and the ids of the tracks embedded so far."""

    paths: dict[int, list[PathPoint]] = field(default_factory=dict)
    embedded: set[int] = field(default_factory=set)

    def add(self, media_time: float, boxes: list[TrackBox], embedded: set[int]) -> None:
        for item in boxes:
            box = item.box
            self.paths.setdefault(item.track_id, []).append((media_time, box.left, box.top, box.right, box.bottom))
        self.embedded |= embedded

    def result(self, camera: str) -> TrackPaths:
        return TrackPaths(camera, {tid: path for tid, path in self.paths.items() if tid in self.embedded})


def box_of(point: PathPoint) -> Box:
    return Box(point[1], point[2], point[3], point[4])
