"""Face tracks: association of detections by box overlap and motion, and by embedding where that is not enough.

A track is one face followed through a camera's frames. It holds, in memory only, what the pipeline needs to
decide about it (a few embedded samples, the best crop so far, a template for re-identification); all of it
is dropped by :meth:`Track.forget` the moment the track ends. Nothing here touches a disk.

Association, on frames where the whole picture was searched:

1. affinity of every (track, detection) pair: the IoU with the track's box predicted at this frame's time
   (constant velocity), or, for boxes that moved more than their overlap shows, a proximity score for
   centres less than a face apart with similar sizes;
2. greedy assignment, best affinity first (a handful of faces per frame: optimal assignment buys nothing);
3. where needed, embeddings: a detection whose two best tracks are nearly tied goes to the one whose
   template it resembles, and a detection that matched no box is compared with the templates of tracks that
   lost their face a moment ago (someone walked behind a pillar), before it starts a new track.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from openlfr.vision.types import Box, Detection, Face
from openlfr.watchlist.templates import RunningTemplate


@dataclass
class Observation:
    """A face box on one frame, and what the pipeline learnt about it (memory only)."""

    box: Box
    score: float
    clock: float
    landmarks: np.ndarray | None = None  # the detector's five points (RetinaFace), frame coordinates
    face: Face | None = None  # landmarks, chip and quality, once analysed
    embedding: np.ndarray | None = None  # once embedded

    @classmethod
    def of(cls, detection: Detection, clock: float) -> Observation:
        return cls(detection.box, detection.score, clock, landmarks=detection.landmarks)


@dataclass
class Sample:
    """One embedded view of a track and how the watchlist answered it."""

    clock: float
    arrival: float
    quality: float
    candidates: list  # list[Candidate], best first
    crop: np.ndarray | None = field(default=None, repr=False)  # kept only while it may become an alert's probe
    box: Box | None = None
    embedding: np.ndarray | None = field(default=None, repr=False)  # kept with the crop, dropped with it


@dataclass
class Track:
    id: int
    box: Box
    first_clock: float
    last_clock: float
    hits: int = 1
    velocity: tuple[float, float] = (0.0, 0.0)  # centre motion, pixels per second
    template: np.ndarray | None = field(default=None, repr=False)  # mean embedding, for re-identification
    samples: deque[Sample] = field(default_factory=deque, repr=False)
    embeddings: int = 0
    last_embed_clock: float = float("-inf")
    best_embedded_quality: float = float("-inf")
    decided: bool = False  # alerted, or out of embedding budget: no more biometric work on it
    alerted: set = field(default_factory=set)
    last_analysed_clock: float = float("-inf")
    gate_looks: deque[bool] = field(default_factory=deque, repr=False)  # the last looks: passed the gate or not
    history: deque[tuple[float, Box]] = field(default_factory=lambda: deque(maxlen=64), repr=False)
    # Track fusion: its looks' quality-weighted template, searched as the track grows (stream/evidence.py)
    fused: RunningTemplate = field(default_factory=RunningTemplate, repr=False)
    # The second opinion's template of the looks its model embedded (stream/second_look.py)
    second_fused: RunningTemplate = field(default_factory=RunningTemplate, repr=False)

    def predict(self, clock: float) -> Box:
        dt = max(0.0, clock - self.last_clock)
        dx, dy = round(self.velocity[0] * dt), round(self.velocity[1] * dt)
        b = self.box
        return Box(b.left + dx, b.top + dy, b.right + dx, b.bottom + dy)

    def observe(self, observation: Observation) -> None:
        dt = observation.clock - self.last_clock
        if dt > 1e-6:
            (cx0, cy0), (cx1, cy1) = self.box.centre, observation.box.centre
            measured = ((cx1 - cx0) / dt, (cy1 - cy0) / dt)
            # Smoothed: detector boxes jitter by a few pixels from frame to frame.
            self.velocity = (0.5 * self.velocity[0] + 0.5 * measured[0], 0.5 * self.velocity[1] + 0.5 * measured[1])
        self.box = observation.box
        self.last_clock = observation.clock
        self.hits += 1
        self.history.append((observation.clock, observation.box))

    def box_at(self, clock: float) -> Box:
        """Where the face was at ``clock`` (the last position seen at or before it; the first if earlier)."""
        best = self.history[0][1] if self.history else self.box
        for seen, box in self.history:
            if seen > clock:
                break
            best = box
        return best

    def add_template(self, embedding: np.ndarray) -> None:
        total = embedding if self.template is None else self.template + embedding
        self.template = (total / np.linalg.norm(total)).astype(np.float32)

    def forget(self) -> None:
        """Drop every crop and embedding this track holds: only its counts outlive it."""
        for sample in self.samples:
            sample.crop = None
            sample.candidates = []
        self.samples.clear()
        self.template = None
        self.fused.clear()
        self.second_fused.clear()


def proximity(a: Box, b: Box) -> float:
    """In [0, 0.5): how close two boxes' centres are relative to their size, for similar sizes; else 0."""
    size_a, size_b = max(a.height, 1), max(b.height, 1)
    ratio = size_a / size_b
    if not 0.6 <= ratio <= 1 / 0.6:
        return 0.0
    (ax, ay), (bx, by) = a.centre, b.centre
    distance = float(np.hypot(ax - bx, ay - by))
    reach = 0.75 * (size_a + size_b) / 2.0
    return 0.0 if distance >= reach else 0.5 * (1.0 - distance / reach)


def affinity(predicted: Box, detected: Box) -> float:
    return max(predicted.iou(detected), proximity(predicted, detected))


EmbedFn = Callable[[Observation], "np.ndarray | None"]
SimilarityFn = Callable[[np.ndarray, np.ndarray], float]


@dataclass
class Association:
    matched: list[tuple[Track, Observation]]
    new: list[Observation]
    missed: list[Track]


class Tracker:
    def __init__(
        self,
        min_affinity: float = 0.2,
        max_age_s: float = 1.0,
        tie_margin: float = 0.15,
        reid_min_similarity: float = 0.75,
        reid_max_gap_s: float = 2.0,
        # A track seen this recently is on a face (followed, or left for the next frame by a camera running
        # behind), not lost: a face like its own elsewhere is somebody else (twins, a poster), never a reappearance.
        reid_min_gap_s: float = 0.15,
    ) -> None:
        self.min_affinity = min_affinity
        self.max_age_s = max_age_s
        self.tie_margin = tie_margin
        self.reid_min_similarity = reid_min_similarity
        self.reid_max_gap_s = reid_max_gap_s
        self.reid_min_gap_s = reid_min_gap_s
        self.active: dict[int, Track] = {}
        self.created = 0
        self._next_id = 1

    @property
    def next_id(self) -> int:
        """The id the next track gets."""
        return self._next_id

    def continue_from(self, next_id: int) -> None:
        """Give new tracks ids from ``next_id`` on (a resumed camera never reuses an id of its earlier runs)."""
        self._next_id = max(self._next_id, next_id)

    def start(self, observation: Observation) -> Track:
        track = Track(self._next_id, observation.box, observation.clock, observation.clock)
        track.history.append((observation.clock, observation.box))
        self._next_id += 1
        self.created += 1
        self.active[track.id] = track
        return track

    def associate(
        self,
        detections: list[Observation],
        clock: float,
        embed: EmbedFn | None = None,
        similarity: SimilarityFn | None = None,
    ) -> Association:
        """Assign this frame's detections to tracks (see the module docstring); does not start or end tracks."""
        tracks = list(self.active.values())
        predicted = [t.predict(clock) for t in tracks]
        scores = np.zeros((len(tracks), len(detections)))
        for i, box in enumerate(predicted):
            for j, detection in enumerate(detections):
                scores[i, j] = affinity(box, detection.box)
        free_tracks = set(range(len(tracks)))
        free_detections = set(range(len(detections)))
        matched: list[tuple[Track, Observation]] = []
        can_embed = embed is not None and similarity is not None

        def resemblance(track: Track, observation: Observation) -> float | None:
            if not can_embed or track.template is None:
                return None
            vector = observation.embedding if observation.embedding is not None else embed(observation)  # type: ignore[misc]
            return None if vector is None else similarity(track.template, vector)  # type: ignore[misc]

        pairs = sorted(
            ((scores[i, j], i, j) for i in range(len(tracks)) for j in range(len(detections))),
            reverse=True,
        )
        for value, i, j in pairs:
            if value < self.min_affinity:
                break
            if i not in free_tracks or j not in free_detections:
                continue
            # A near tie with another free track: let the faces decide, if both tracks have a template.
            rivals = [
                k
                for k in free_tracks
                if k != i and scores[k, j] >= self.min_affinity and scores[i, j] - scores[k, j] < self.tie_margin
            ]
            choice = i
            if rivals:
                contenders = [i, *rivals]
                looks = [resemblance(tracks[k], detections[j]) for k in contenders]
                known = [look for look in looks if look is not None]
                if len(known) == len(looks):
                    choice = contenders[int(np.argmax(known))]
            free_tracks.discard(choice)
            free_detections.discard(j)
            matched.append((tracks[choice], detections[j]))

        # Detections no box explains: someone reappearing after a short occlusion, if their face says so.
        new: list[Observation] = []
        for j in sorted(free_detections):
            detection = detections[j]
            lost = [
                k
                for k in free_tracks
                if tracks[k].template is not None
                and self.reid_min_gap_s < clock - tracks[k].last_clock <= self.reid_max_gap_s
            ]
            best_k, best_value = None, self.reid_min_similarity
            for k in lost:
                value = resemblance(tracks[k], detection)
                if value is not None and value >= best_value:
                    best_k, best_value = k, value
            if best_k is None:
                new.append(detection)
            else:
                free_tracks.discard(best_k)
                matched.append((tracks[best_k], detection))
        return Association(matched, new, [tracks[k] for k in sorted(free_tracks)])

    def expire(self, clock: float) -> list[Track]:
        """End the tracks unseen for longer than ``max_age_s``; the caller forgets them."""
        ended = [t for t in self.active.values() if clock - t.last_clock > self.max_age_s]
        for track in ended:
            del self.active[track.id]
        return ended

    def end_all(self) -> list[Track]:
        ended = list(self.active.values())
        self.active.clear()
        return ended
