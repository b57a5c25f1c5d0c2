"""Drawing boxes and labels on images (for `faces --out`, the demo and camera tiles)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from openlfr.vision.types import Box


def draw_faces(
    image: np.ndarray, labelled: Sequence[tuple[Box, str]], colour: tuple[int, int, int] = (0, 220, 90)
) -> np.ndarray:
    canvas = Image.fromarray(image).copy()
    pen = ImageDraw.Draw(canvas)
    width = max(2, min(image.shape[:2]) // 300)
    for box, label in labelled:
        pen.rectangle([box.left, box.top, box.right, box.bottom], outline=colour, width=width)
        if label:
            pen.text((box.left, max(0, box.top - 12)), label, fill=colour)
    return np.asarray(canvas)


def blur_box(image: np.ndarray, box: Box, block: int = 12) -> None:
    """Pixelate a box in place (faces of people who raised no alert, on live tiles)."""
    region = image[box.top : box.bottom, box.left : box.right]
    if region.size == 0:
        return
    rows, cols = region.shape[:2]
    small = Image.fromarray(region).resize((max(1, cols // block), max(1, rows // block)), Image.Resampling.BILINEAR)
    image[box.top : box.bottom, box.left : box.right] = np.asarray(small.resize((cols, rows), Image.Resampling.NEAREST))
