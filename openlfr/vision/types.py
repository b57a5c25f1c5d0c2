"""The small typed interfaces between the stages of face analysis.

A frame travels: ``FaceDetector`` (boxes, and five landmarks when the detector gives them) -> ``FaceAligner``
(the landmarks its chip needs, then a normalised chip) -> ``FaceEmbedder`` (a unit-norm embedding per chip).
``FaceEngine`` in ``engine.py`` composes them. Images are always RGB ``uint8`` arrays of shape (rows, cols, 3).

Two 5-point landmark layouts are in use; a face says which one its landmarks follow (``landmark_order``):
``DLIB_FIVE``, dlib's ``shape_predictor_5`` (two corners of one eye, two of the other, the base of the nose),
and ``EYES_NOSE_MOUTH``, RetinaFace's and ArcFace's (eye centres, nose tip, mouth corners; image-left first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (float32); embeddings are always compared as unit vectors."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class Box:
    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def area(self) -> int:
        return max(0, self.width) * max(0, self.height)

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.left + self.right) / 2.0, (self.top + self.bottom) / 2.0)

    def iou(self, other: Box) -> float:
        inter = Box(
            max(self.left, other.left),
            max(self.top, other.top),
            min(self.right, other.right),
            min(self.bottom, other.bottom),
        )
        if inter.width <= 0 or inter.height <= 0:
            return 0.0
        union = self.area + other.area - inter.area
        return inter.area / union if union > 0 else 0.0

    def as_list(self) -> list[int]:
        return [self.left, self.top, self.right, self.bottom]


DLIB_FIVE = "dlib5"
EYES_NOSE_MOUTH = "eyes-nose-mouth"


@dataclass(frozen=True)
class Detection:
    box: Box
    score: float
    detector: str
    # (5, 2) float image coordinates in the EYES_NOSE_MOUTH order, from detectors that find them (RetinaFace).
    landmarks: np.ndarray | None = field(default=None, compare=False, repr=False)

    def moved(self, factor: float, dx: float = 0.0, dy: float = 0.0) -> Detection:
        """The same detection in other coordinates: scaled by ``factor``, then shifted by (dx, dy)."""
        box = Box(
            round(self.box.left * factor + dx),
            round(self.box.top * factor + dy),
            round(self.box.right * factor + dx),
            round(self.box.bottom * factor + dy),
        )
        points = None if self.landmarks is None else self.landmarks * factor + np.array([dx, dy])
        return Detection(box, self.score, self.detector, points)


@dataclass(frozen=True)
class Quality:
    """What decides whether a face is worth embedding or enrolling."""

    face_height_px: int
    inter_eye_px: float
    sharpness: float  # variance of the Laplacian of the grey chip; low = blurred
    yaw_deg: float  # left/right turn estimated from the 5 landmarks; 0 = frontal
    pitch_deg: float  # up/down, a coarse estimate
    roll_deg: float  # in-plane tilt of the eye line

    def as_dict(self) -> dict[str, float]:
        return {
            "face_height_px": self.face_height_px,
            "inter_eye_px": round(self.inter_eye_px, 2),
            "sharpness": round(self.sharpness, 2),
            "yaw_deg": round(self.yaw_deg, 1),
            "pitch_deg": round(self.pitch_deg, 1),
            "roll_deg": round(self.roll_deg, 1),
        }

    def score(self) -> float:
        """A single number for best-shot selection: bigger, sharper, more frontal is better."""
        size = min(self.inter_eye_px / 40.0, 1.0)
        sharp = min(self.sharpness / 200.0, 1.0)
        frontal = max(0.0, 1.0 - (abs(self.yaw_deg) + abs(self.pitch_deg)) / 90.0)
        return size * 0.4 + sharp * 0.3 + frontal * 0.3


@dataclass
class Face:
    """One face found in an image. ``embedding`` is None until the face is embedded."""

    box: Box
    score: float
    detector: str
    landmarks: np.ndarray  # (5, 2) float, in ``landmark_order``: the detector's when it gives them, else the aligner's
    quality: Quality
    chip: np.ndarray = field(repr=False)  # the aligned chip the embedder was (or will be) fed
    landmark_order: str = DLIB_FIVE
    # Chips of the same face from other alignments (stills only); in memory only, like the chip.
    other_chips: list[np.ndarray] = field(default_factory=list, repr=False)
    embedding: np.ndarray | None = field(default=None, repr=False)
    model_id: str | None = None


class FaceDetector(Protocol):
    name: str
    colour: bool  # reads colour (give it RGB); False: grey levels are all it uses (give it the luma plane)
    search_face_px: int  # small searches around a known face scale it to about this height (its cheapest reliable)
    retry_face_px: int  # a search at that size that comes back empty is tried once more at this one
    live_scale: float  # the live pipeline's whole-picture detection searches a copy scaled by this by default

    def detect(self, image: np.ndarray) -> list[Detection]: ...


class FaceAligner(Protocol):
    chip_size: int
    # The layout ``landmarks`` returns and ``chip`` takes. An EYES_NOSE_MOUTH aligner is given the detector's
    # landmarks when there are some, and finds them itself only for a bare box.
    landmark_order: str

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray: ...

    def chip(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray: ...


class FaceEmbedder(Protocol):
    model_id: str
    chip_size: int
    dimension: int

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """(N, chip_size, chip_size, 3) uint8 RGB -> (N, dimension) float32, each row unit-norm."""
        ...
