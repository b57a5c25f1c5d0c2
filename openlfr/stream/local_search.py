"""Where each face is now: detection in the camera's search area and in small windows around known faces.

The camera pipeline (``stream/pipeline.py``) decides what to do with the faces; this finds them. A followed
face is searched in a window around its track's predicted box, scaled so the face is ``window_face_px`` tall
(RetinaFace 46 px: ~0.7 ms a face), all of a frame's windows in one detector call; a window that comes back
empty for a track seen on the previous frame is searched once more at the detector's ``retry_face_px`` (56 px).
Boxes and landmarks only: nothing here looks at who a face is.
"""

from __future__ import annotations

from openlfr.settings import StreamSettings
from openlfr.stream.detector import detect_in_area, detect_in_areas
from openlfr.stream.frames import YuvFrame, clip_box, expand_box
from openlfr.stream.source import CameraConfig
from openlfr.stream.tracker import Observation, Track, Tracker, affinity
from openlfr.vision.types import Box, Detection, FaceDetector


class LocalSearch:
    """One camera's face search: its region of interest, its smallest face, its window sizes."""

    def __init__(self, camera: CameraConfig, config: StreamSettings, detector: FaceDetector, tracker: Tracker) -> None:
        self.camera = camera
        self.config = config
        self.detector = detector
        self.tracker = tracker
        self.min_face_px = max(camera.min_face_px, 0) or config.min_face_px
        self.window_face_px = config.window_face_px or detector.search_face_px
        self.retry_face_px = max(self.window_face_px, detector.retry_face_px)

    def area(self, frame: YuvFrame) -> Box:
        """Where faces are looked for: the camera's region of interest, or the whole picture."""
        return clip_box(self.camera.roi, frame.width, frame.height) if self.camera.roi else frame.bounds()

    def detect(self, frame: YuvFrame, area: Box, factor: float) -> list[Detection]:
        """Faces in ``area`` searched on a copy scaled by ``factor``, the camera's smallest face and up."""
        found = detect_in_area(self.detector, frame, area, factor)
        return [d for d in found if d.box.height >= self.min_face_px]

    def window_around(self, frame: YuvFrame, box: Box, margin: float, face_px: int = 0) -> tuple[Box, float]:
        """The search window around a face (grown by ``margin`` a side, inside the search area) and the scale
        that makes the face about ``face_px`` (default ``window_face_px``) tall in it."""
        area = self.area(frame)
        grown = expand_box(box, margin, frame.width, frame.height)
        window = Box(
            max(grown.left, area.left),
            max(grown.top, area.top),
            min(grown.right, area.right),
            min(grown.bottom, area.bottom),
        )
        return window, min(2.0, max(0.25, (face_px or self.window_face_px) / max(box.height, 1)))

    def find_again(self, frame: YuvFrame, clock: float, where: Box, taken: list[Box]) -> Observation | None:
        """The face detected at ``where`` a few frames ago, in the current frame (local detection around it)."""
        window, factor = self.window_around(frame, where, 2 * self.config.window_margin)
        best, best_value = None, 0.0
        for found in self.detect(frame, window, factor):
            value = max(affinity(where, found.box), 0.01)
            if value > best_value and not any(box.iou(found.box) > 0.5 for box in taken):
                best, best_value = found, value
        return None if best is None else Observation.of(best, clock)

    def follow(
        self, frame: YuvFrame, clock: float, previous_clock: float, thin: bool = False
    ) -> list[tuple[Track, Observation]]:
        """Track-local detection around each track's predicted box; the better claim wins a shared face.

        ``thin`` (a live camera running behind, sampling left to a later frame): each track is searched only if
        unseen for ``behind_follow_gap_s``, every other frame at 25 fps, instead of frames dropped whole.
        """
        claims: list[tuple[float, Track, Observation]] = []
        tracks = [
            t
            for t in self.tracker.active.values()
            if not thin or clock - t.last_clock >= self.config.behind_follow_gap_s
        ]
        predicted_boxes = [track.predict(clock) for track in tracks]
        windows = [self.window_around(frame, box, self.config.window_margin) for box in predicted_boxes]
        # One search call for all windows: RetinaFace runs them through the network as one batch.
        found_in = detect_in_areas(self.detector, frame, windows)
        self._retry_lost(frame, previous_clock, tracks, predicted_boxes, found_in)
        for track, predicted, found in zip(tracks, predicted_boxes, found_in, strict=True):
            claim = self._claim(predicted, found)
            if claim is not None:
                claims.append((claim[1], track, Observation.of(claim[0], clock)))
        seen: list[tuple[Track, Observation]] = []
        for _, track, observation in sorted(claims, key=lambda c: -c[0]):
            if any(observation.box.iou(other.box) > 0.5 for _, other in seen):
                continue  # two tracks on one face: the weaker claim waits and ages out if it was a duplicate
            track.observe(observation)
            seen.append((track, observation))
        return seen

    def _claim(self, predicted: Box, found: list[Detection]) -> tuple[Detection, float] | None:
        """The detection a track at ``predicted`` claims (the best affinity, at least the tracker's), with it."""
        best, best_value = None, self.tracker.min_affinity
        for detection in found:
            if detection.box.height < self.min_face_px:
                continue
            value = affinity(predicted, detection.box)
            if value >= best_value:
                best, best_value = detection, value
        return None if best is None else (best, best_value)

    def _retry_lost(
        self,
        frame: YuvFrame,
        previous_clock: float,
        tracks: list[Track],
        predicted: list[Box],
        found_in: list[list[Detection]],
    ) -> None:
        """Search again, at the detector's ``retry_face_px``, the windows of tracks seen on the previous frame that
        came back empty: the small search size misses a face now and then (a turned head, motion blur), and a
        track broken there loses the frames until the next whole-picture detection. Only a track's first miss
        is retried, so a face that has left costs one search more, not one a frame."""
        if self.retry_face_px <= self.window_face_px:
            return
        lost = [
            i
            for i, (track, found) in enumerate(zip(tracks, found_in, strict=True))
            if track.last_clock >= previous_clock and self._claim(predicted[i], found) is None
        ]
        if not lost:
            return
        margin = self.config.window_margin
        windows = [self.window_around(frame, predicted[i], margin, self.retry_face_px) for i in lost]
        for i, found in zip(lost, detect_in_areas(self.detector, frame, windows), strict=True):
            found_in[i] = found
