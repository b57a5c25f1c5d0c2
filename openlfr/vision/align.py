"""Alignment on ArcFace's 5-point template: eye centres, nose tip and mouth corners onto fixed chip positions.

Embedders trained on ArcFace-aligned chips (MobileFaceNet, user-supplied ArcFace models) are fed chips made
from the detector's five landmarks (RetinaFace gives them with the box). A bare box (a face given by position,
a detector without landmarks) gets its five points from a landmark source first.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from PIL import Image

from openlfr.vision.onnx_embedder import similarity_transform
from openlfr.vision.types import EYES_NOSE_MOUTH, Box

# ArcFace's reference positions in a 112x112 chip, in the EYES_NOSE_MOUTH order.
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


class LandmarkSource(Protocol):
    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        """(5, 2) EYES_NOSE_MOUTH points of the face at ``box``."""
        ...


def warp_to_template(image: np.ndarray, points: np.ndarray, template: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` chip in which ``points`` land (least squares, similarity) on ``template``.

    Points that coincide (a degenerate detection) define no transform: the chip is then black, which every
    quality gate refuses.
    """
    if float(np.var(points, axis=0).sum()) < 1e-6:
        return np.zeros((size, size, 3), dtype=np.uint8)
    forward = np.vstack([similarity_transform(points, template), [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(forward)[:2]  # PIL maps output pixels back to input pixels
    # Only the part of the image the chip can reach goes to PIL (not a whole photo per face): the chip's
    # corners mapped back, plus a pixel for the bilinear neighbours.
    corners = inverse @ np.array([[0, size, 0, size], [0, 0, size, size], [1, 1, 1, 1]], dtype=np.float64)
    rows, cols = image.shape[:2]
    left, top = max(0, int(np.floor(corners[0].min())) - 1), max(0, int(np.floor(corners[1].min())) - 1)
    right, bottom = min(cols, int(np.ceil(corners[0].max())) + 2), min(rows, int(np.ceil(corners[1].max())) + 2)
    if right <= left or bottom <= top:  # the chip lies wholly outside the image
        return np.zeros((size, size, 3), dtype=np.uint8)
    inverse[:, 2] -= (left, top)
    source = Image.fromarray(np.ascontiguousarray(image[top:bottom, left:right]))
    coefficients = tuple(float(c) for c in inverse.reshape(-1))
    warped = source.transform((size, size), Image.Transform.AFFINE, coefficients, Image.Resampling.BILINEAR)
    return np.asarray(warped, dtype=np.uint8)


class ArcFaceAligner:
    """Chips on the full 5-point ArcFace template, scaled to the embedder's chip size."""

    landmark_order = EYES_NOSE_MOUTH

    def __init__(self, landmark_source: LandmarkSource, chip_size: int = 112) -> None:
        self._source = landmark_source
        self.chip_size = chip_size
        self.template = ARCFACE_TEMPLATE_112 * (chip_size / 112.0)

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        return self._source.landmarks(image, box)

    def chip(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        return warp_to_template(image, landmarks, self.template, self.chip_size)
