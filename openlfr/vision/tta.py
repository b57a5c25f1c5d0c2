"""Test-time augmentation: more views of one face, averaged into one embedding.

Views of a chip: the chip, its mirror image, and the mean of N jittered copies (dlib's recipe: up to 3 degrees of
rotation, 2% shift, 0-3% zoom out, mirrored half the time). Jitter is seeded by the chip's own pixels, so the
same face always gets the same embedding.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

MAX_ROTATION_DEGREES = 3.0
MIN_OBJECT_HEIGHT = 0.97
TRANSLATE_FRACTION = 0.02


def jitter_chips(chip: np.ndarray, count: int) -> np.ndarray:
    """``count`` randomly perturbed copies of a square chip, deterministic for a given chip."""
    import dlib  # imported here so that importing the engine stays light for the CLI

    size = chip.shape[0]
    rng = np.random.default_rng(zlib.crc32(chip.tobytes()))
    inner = size - 6
    centre = size / 2.0
    copies = []
    for _ in range(count):
        dx, dy = rng.uniform(-TRANSLATE_FRACTION, TRANSLATE_FRACTION, 2) * inner
        box = inner / rng.uniform(MIN_OBJECT_HEIGHT, 1.0)
        angle = math.radians(rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES))
        rect = dlib.drectangle(
            centre + dx - box / 2, centre + dy - box / 2, centre + dx + box / 2, centre + dy + box / 2
        )
        details = dlib.chip_details(rect, dlib.chip_dims(size, size), angle)
        view = np.asarray(dlib.extract_image_chip(chip, details))
        copies.append(view[:, ::-1] if rng.random() > 0.5 else view)
    return np.stack(copies)
