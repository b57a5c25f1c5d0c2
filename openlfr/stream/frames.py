"""A decoded video frame kept as planar YUV 4:2:0, the way decoders hand it over.

Why not RGB: converting a whole 1080p frame to RGB costs ~30 ms, three times the decode itself. The
detector runs on the luma plane alone (HOG works on grey levels), and only the few small regions around
faces are converted to RGB, for landmarks, the face chip and the alert's probe crop.

The packed layout is I420: the Y plane (height x width), then U and V (height/2 x width/2 each). Width and
height are even (the capture side makes them so).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from openlfr.vision.types import Box

# Y'CbCr -> R'G'B' coefficients (Kr, Kb) of the two matrices that matter for video.
_MATRICES = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}


def i420_size(width: int, height: int) -> int:
    return width * height * 3 // 2


@dataclass(frozen=True)
class FrameFormat:
    width: int
    height: int
    matrix: str = "bt601"  # "bt601" or "bt709"
    full_range: bool = False  # JPEG-style 0-255 levels instead of the 16-235 of broadcast video

    @property
    def nbytes(self) -> int:
        return i420_size(self.width, self.height)


class YuvFrame:
    """Views into one packed I420 buffer; nothing is copied until a region is asked for."""

    def __init__(self, buffer: np.ndarray, fmt: FrameFormat) -> None:
        if fmt.width % 2 or fmt.height % 2:
            raise ValueError(f"I420 frames need even dimensions, got {fmt.width}x{fmt.height}")
        flat = buffer.reshape(-1)[: fmt.nbytes]
        if flat.size != fmt.nbytes:
            raise ValueError(
                f"buffer holds {flat.size} bytes, a {fmt.width}x{fmt.height} I420 frame needs {fmt.nbytes}"
            )
        w, h = fmt.width, fmt.height
        luma = w * h
        chroma = luma // 4
        self.format = fmt
        self.width, self.height = w, h
        self.y = flat[:luma].reshape(h, w)
        self.u = flat[luma : luma + chroma].reshape(h // 2, w // 2)
        self.v = flat[luma + chroma : luma + 2 * chroma].reshape(h // 2, w // 2)

    def bounds(self) -> Box:
        return Box(0, 0, self.width, self.height)

    def gray(self, region: Box | None = None) -> np.ndarray:
        """The luma plane (or a region of it) as a contiguous uint8 array: what the detector reads."""
        if region is None:
            return np.ascontiguousarray(self.y)
        region = clip_box(region, self.width, self.height)
        return np.ascontiguousarray(self.y[region.top : region.bottom, region.left : region.right])

    def rgb(self, region: Box | None = None) -> tuple[np.ndarray, Box]:
        """RGB uint8 of a region (snapped outwards to even coordinates), and the region actually converted."""
        area = even_box(clip_box(region or self.bounds(), self.width, self.height), self.width, self.height)
        y = self.y[area.top : area.bottom, area.left : area.right]
        cu = self.u[area.top // 2 : area.bottom // 2, area.left // 2 : area.right // 2]
        cv = self.v[area.top // 2 : area.bottom // 2, area.left // 2 : area.right // 2]
        u = np.repeat(np.repeat(cu, 2, axis=0), 2, axis=1)
        v = np.repeat(np.repeat(cv, 2, axis=0), 2, axis=1)
        return yuv_to_rgb(y, u, v, self.format), area

    def preview(self, max_width: int) -> tuple[np.ndarray, float]:
        """The whole frame in RGB, subsampled to at most ``max_width`` columns (cheap: no full-size conversion),
        and the scale factor applied. For live views only: never for analysis."""
        step = max(1, -(-self.width // max(max_width, 2)))
        if step == 1:
            rgb, _ = self.rgb()
            return rgb, 1.0
        step += step % 2  # even, so the chroma planes subsample on the same grid
        y = self.y[::step, ::step]
        u = self.u[:: step // 2, :: step // 2][: y.shape[0], : y.shape[1]]
        v = self.v[:: step // 2, :: step // 2][: y.shape[0], : y.shape[1]]
        return yuv_to_rgb(y, u, v, self.format), 1.0 / step


def yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray, fmt: FrameFormat) -> np.ndarray:
    """Y'CbCr planes of one size -> RGB uint8, with the frame's matrix and range."""
    kr, kb = _MATRICES[fmt.matrix]
    kg = 1.0 - kr - kb
    luma = y.astype(np.float32)
    cb = u.astype(np.float32) - 128.0
    cr = v.astype(np.float32) - 128.0
    if not fmt.full_range:
        luma = (luma - 16.0) * (255.0 / 219.0)
        cb *= 255.0 / 224.0
        cr *= 255.0 / 224.0
    out = np.empty((*luma.shape, 3), dtype=np.float32)
    out[..., 0] = luma + 2.0 * (1.0 - kr) * cr
    out[..., 1] = luma - (2.0 * kb * (1.0 - kb) / kg) * cb - (2.0 * kr * (1.0 - kr) / kg) * cr
    out[..., 2] = luma + 2.0 * (1.0 - kb) * cb
    np.clip(out, 0.0, 255.0, out=out)
    return np.rint(out).astype(np.uint8)


def clip_box(box: Box, width: int, height: int) -> Box:
    return Box(
        min(max(0, box.left), width),
        min(max(0, box.top), height),
        min(max(0, box.right), width),
        min(max(0, box.bottom), height),
    )


def even_box(box: Box, width: int, height: int) -> Box:
    """Snap outwards to even coordinates so a region lines up with the half-resolution chroma planes."""
    return Box(
        box.left - box.left % 2,
        box.top - box.top % 2,
        min(width, box.right + box.right % 2),
        min(height, box.bottom + box.bottom % 2),
    )


def expand_box(box: Box, margin: float, width: int, height: int) -> Box:
    """The box grown by ``margin`` times its size on every side, clipped to the frame."""
    dx, dy = round(box.width * margin), round(box.height * margin)
    return clip_box(Box(box.left - dx, box.top - dy, box.right + dx, box.bottom + dy), width, height)


def shift_box(box: Box, dx: int, dy: int) -> Box:
    return Box(box.left + dx, box.top + dy, box.right + dx, box.bottom + dy)


def scale_box(box: Box, factor: float) -> Box:
    return Box(
        round(box.left * factor),
        round(box.top * factor),
        round(box.right * factor),
        round(box.bottom * factor),
    )


def rgb_to_i420(rgb: np.ndarray, matrix: str = "bt601", full_range: bool = False) -> np.ndarray:
    """The inverse conversion, for tests and synthetic sources: RGB (even size) -> packed I420 bytes."""
    rows, cols = rgb.shape[:2]
    if rows % 2 or cols % 2:
        raise ValueError("I420 needs even dimensions")
    kr, kb = _MATRICES[matrix]
    kg = 1.0 - kr - kb
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    y = kr * r + kg * g + kb * b
    u = (b - y) / (2.0 * (1.0 - kb))
    v = (r - y) / (2.0 * (1.0 - kr))
    if not full_range:
        y = 16.0 + y * 219.0 / 255.0
        u *= 224.0 / 255.0
        v *= 224.0 / 255.0
    u += 128.0
    v += 128.0

    def half(plane: np.ndarray) -> np.ndarray:
        return plane.reshape(rows // 2, 2, cols // 2, 2).mean(axis=(1, 3))

    planes = [np.clip(np.rint(p), 0, 255).astype(np.uint8).reshape(-1) for p in (y, half(u), half(v))]
    return np.concatenate(planes)
