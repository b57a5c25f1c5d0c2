"""A stored reference picture -> its embedding under the engine's model, or the reason not (``watchlist reembed``).

Enrolment keeps a JPEG of the face region of each photo (the face box widened on each side, at most
``FACE_JPEG_MAX_SIDE`` pixels), never the photo itself, so a new model can only look at that picture: the face
is detected again inside it and aligned from its own landmarks, as enrolment does on a whole photo.

The quality gate is not applied again: the photo passed it at enrolment, measured on the full photo; the stored
picture is scaled down, so sizes measured in its pixels are not comparable with the gate's thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from openlfr.enrolment.photos import embed_face
from openlfr.errors import ImageError
from openlfr.vision.engine import FaceEngine
from openlfr.vision.image_io import decode_rgb
from openlfr.vision.types import Box, Detection


@dataclass(frozen=True)
class Reembedded:
    """One stored picture's new embedding (``embedding`` set) or why there is none (``reason``)."""

    embedding: np.ndarray | None = field(default=None, repr=False)
    model_id: str = ""
    reason: str = ""


def centre_face(detections: list[Detection], rows: int, cols: int) -> Detection:
    """The detection nearest the middle of the picture: the stored picture is centred on the enrolled face
    (a neighbour's face, when one shows, is cut by its edge)."""
    middle = (cols / 2.0, rows / 2.0)

    def distance(box: Box) -> float:
        x, y = box.centre
        return (x - middle[0]) ** 2 + (y - middle[1]) ** 2

    return min(detections, key=lambda d: distance(d.box))


def reembed_picture(engine: FaceEngine, face_jpeg: bytes | None, max_pixels: int) -> Reembedded:
    """The embedding of the enrolled face in a stored face picture, under ``engine``'s model."""
    if not face_jpeg:
        return Reembedded(reason="no stored face picture")
    try:
        pixels = decode_rgb(face_jpeg, "the stored face picture", max_pixels)
    except ImageError as exc:
        return Reembedded(reason=str(exc))
    detections = engine.detect(pixels)
    if not detections:
        return Reembedded(reason="no face found in the stored face picture")
    chosen = centre_face(detections, *pixels.shape[:2])
    (face,) = engine.analyse(pixels, [chosen])
    embedding = embed_face(engine, face)
    return Reembedded(embedding=embedding, model_id=face.model_id or "")
