"""Live camera tiles for the console: the latest frame of each camera, small, with boxes drawn and every face
that raised no alert pixelated. Held in memory only (never written anywhere) and dropped when stale.

A face is shown as alerted only once its alert is in the database: the board's marks come from the committed-alert
event (``TileBoard.mark_alert``, subscribed in ``openlfr.server``), never from the pipeline's own verdict, so an
alert refused or not yet written leaves the face pixelated."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from openlfr.stream.worker import FrameView
from openlfr.vision.draw import blur_box, draw_faces
from openlfr.vision.image_io import encode_jpeg
from openlfr.vision.types import Box

TILE_WIDTH = 640
MIN_INTERVAL_S = 0.5  # at most two pictures a second per camera: enough to watch, cheap to make
STALE_AFTER_S = 10.0
MARKS_PER_CAMERA = 256  # alerted tracks remembered per camera (tracks are short-lived; the oldest go first)
MARKED_CAMERAS = 1024  # cameras with marks remembered (those of other processes' runs included)
ALERT_COLOUR = (230, 40, 40)
FACE_COLOUR = (0, 200, 90)


@dataclass(frozen=True)
class TileFace:
    box: Box
    alerted: bool  # this face's track raised an alert: shown; every other face is pixelated
    label: str = ""


def render_tile(
    frame: np.ndarray, faces: Sequence[TileFace], width: int = TILE_WIDTH, blur_scene: bool = True
) -> bytes:
    """A JPEG of the frame, scaled to ``width``, boxes drawn; only faces that raised an alert are shown sharp.

    Every detected face without an alert is pixelated. A detector also misses faces (turned away, small,
    in shadow), and a missed face cannot be blurred by its box; so with ``blur_scene`` (the default) the
    whole picture is pixelated too, coarsely enough that nobody is recognisable, and the operator sees
    where people are, the boxes, and the alerted faces.
    """
    rows, cols = frame.shape[:2]
    scale = min(1.0, width / cols)
    picture = frame.copy()
    for face in faces:
        if not face.alerted:
            clipped = _clip(face.box, cols, rows)
            # Blur before scaling down: nothing of the face survives into the small picture.
            blur_box(picture, clipped, block=max(6, clipped.height // 6))
    if blur_scene:
        blur_box(picture, Box(0, 0, cols, rows), block=max(8, cols // 64))
        for face in faces:
            if face.alerted:
                shown = _clip(face.box, cols, rows)
                picture[shown.top : shown.bottom, shown.left : shown.right] = frame[
                    shown.top : shown.bottom, shown.left : shown.right
                ]
    if scale < 1.0:
        size = (max(1, round(cols * scale)), max(1, round(rows * scale)))
        picture = np.asarray(Image.fromarray(picture).resize(size, Image.Resampling.BILINEAR))

    def scaled(box: Box) -> Box:
        return Box(round(box.left * scale), round(box.top * scale), round(box.right * scale), round(box.bottom * scale))

    picture = draw_faces(picture, [(scaled(f.box), "") for f in faces if not f.alerted], FACE_COLOUR)
    picture = draw_faces(picture, [(scaled(f.box), f.label) for f in faces if f.alerted], ALERT_COLOUR)
    return encode_jpeg(picture, quality=75)


def _clip(box: Box, cols: int, rows: int) -> Box:
    return Box(max(0, box.left), max(0, box.top), min(cols, box.right), min(rows, box.bottom))


class TileBoard:
    """The latest tile of each (deployment, camera). Thread-safe; pipelines publish, the console reads."""

    def __init__(self, blur_scene: bool = True) -> None:
        self.blur_scene = blur_scene
        self._lock = threading.Lock()
        self._tiles: dict[tuple[int, str], tuple[float, bytes]] = {}
        self._last_made: dict[tuple[int, str], float] = {}
        self._marks: dict[tuple[int, str], dict[int, str]] = {}  # (deployment, camera) -> alerted track -> label

    def wants(self, deployment_id: int, camera: str) -> bool:
        """Whether a new tile is due; ask before rendering, so skipped frames cost nothing."""
        with self._lock:
            return time.monotonic() - self._last_made.get((deployment_id, camera), 0.0) >= MIN_INTERVAL_S

    def mark_alert(self, deployment_id: int, camera: str, track_id: int, label: str) -> None:
        """A committed alert: its track's face is shown, labelled, on the camera's tiles from now on."""
        key = (deployment_id, camera)
        with self._lock:
            marks = self._marks.pop(key, {})
            self._marks[key] = marks  # the most recently marked camera last
            labels = [part for part in marks.pop(track_id, "").split(", ") if part]
            marks[track_id] = ", ".join(sorted({*labels, label}))
            while len(marks) > MARKS_PER_CAMERA:
                del marks[next(iter(marks))]
            while len(self._marks) > MARKED_CAMERAS:
                del self._marks[next(iter(self._marks))]

    def marks(self, deployment_id: int, camera: str) -> dict[int, str]:
        """The camera's alerted tracks and their labels."""
        with self._lock:
            return dict(self._marks.get((deployment_id, camera), {}))

    def publish(self, deployment_id: int, camera: str, frame: np.ndarray, tracks: Sequence[tuple[int, Box]]) -> None:
        """A new tile of the frame, its faces ``(track id, box)``: those of a committed alert shown, the others
        pixelated."""
        key = (deployment_id, camera)
        with self._lock:
            self._last_made[key] = time.monotonic()
            marks = dict(self._marks.get(key, {}))
        faces = [TileFace(box, track in marks, marks.get(track, "")) for track, box in tracks]
        tile = render_tile(frame, faces, blur_scene=self.blur_scene)
        with self._lock:
            self._tiles[key] = (time.monotonic(), tile)

    def latest(self, deployment_id: int, camera: str) -> bytes | None:
        with self._lock:
            entry = self._tiles.get((deployment_id, camera))
        if entry is None or time.monotonic() - entry[0] > STALE_AFTER_S:
            return None
        return entry[1]

    def clear(self, deployment_id: int) -> None:
        with self._lock:
            for key in [k for k in self._tiles if k[0] == deployment_id]:
                del self._tiles[key]
                self._last_made.pop(key, None)


def tile_tracks(view: FrameView) -> list[tuple[int, Box]]:
    """The faces of a pipeline's frame view, ``(track id, box)``, boxes scaled to the picture it carries."""
    scale = float(view.scale)
    return [
        (
            b.track_id,
            Box(
                round(b.box.left * scale),
                round(b.box.top * scale),
                round(b.box.right * scale),
                round(b.box.bottom * scale),
            ),
        )
        for b in view.boxes
    ]
