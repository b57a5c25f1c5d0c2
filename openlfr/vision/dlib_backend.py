"""dlib detectors (HOG, MMOD CNN) and the 5-point aligner producing exactly the chip dlib's network eats."""

from __future__ import annotations

import threading
from pathlib import Path

import dlib
import numpy as np

from openlfr.vision.model_files import LANDMARKS_5_FILE, LANDMARKS_68_FILE, MMOD_FILE, RESNET_FILE, model_file
from openlfr.vision.plausible import plausible
from openlfr.vision.types import DLIB_FIVE, Box, Detection, unit_rows

# dlib's face chip for its ResNet: 150x150 with 25% padding around the landmark-normalised face.
DLIB_CHIP_SIZE = 150
DLIB_CHIP_PADDING = 0.25


def _clip_box(rect: dlib.rectangle, rows: int, cols: int) -> Box:
    return Box(
        max(0, int(rect.left())),
        max(0, int(rect.top())),
        min(cols, int(rect.right()) + 1),
        min(rows, int(rect.bottom()) + 1),
    )


class HogDetector:
    """dlib's frontal HOG + linear SVM detector: fast on a CPU; frontal faces ~80 px and up (less upsampled)."""

    name = "hog"
    colour = False
    search_face_px = 80  # HOG's window is 80 px: smaller faces are missed
    retry_face_px = 80  # no second search: HOG's one size is its window
    live_scale = 1.0  # (smaller faces need OPENLFR_STREAM_DETECT_UPSAMPLE instead)

    def __init__(self, upsample: int = 1, threshold: float = 0.0) -> None:
        self.upsample = upsample
        self.threshold = threshold
        self._detector = dlib.get_frontal_face_detector()

    @classmethod
    def open(
        cls, model_path: Path | None, *, threads: int, scale: float, min_score: float, upsample: int
    ) -> HogDetector:
        """The registry's constructor: dlib's detectors take only the upsampling (their files ship with dlib)."""
        return cls(upsample=upsample)

    def detect(self, image: np.ndarray) -> list[Detection]:
        rects, scores, _ = self._detector.run(image, self.upsample, self.threshold)
        rows, cols = image.shape[:2]
        return plausible(
            [
                Detection(_clip_box(rect, rows, cols), float(score), self.name)
                for rect, score in zip(rects, scores, strict=True)
            ]
        )


class MmodDetector:
    """dlib's MMOD CNN detector: finds turned and smaller faces HOG misses, at several times the cost."""

    name = "mmod"
    colour = True
    search_face_px = 80
    retry_face_px = 80
    live_scale = 1.0

    def __init__(self, upsample: int = 1) -> None:
        self.upsample = upsample
        self._detector = dlib.cnn_face_detection_model_v1(str(model_file(MMOD_FILE)))

    @classmethod
    def open(
        cls, model_path: Path | None, *, threads: int, scale: float, min_score: float, upsample: int
    ) -> MmodDetector:
        """The registry's constructor: dlib's detectors take only the upsampling (their files ship with dlib)."""
        return cls(upsample=upsample)

    def detect(self, image: np.ndarray) -> list[Detection]:
        rows, cols = image.shape[:2]
        if min(rows, cols) < TOO_SMALL_FOR_MMOD:  # dlib raises on an image smaller than its filters; no face fits
            return []
        found = self._detector(image, self.upsample)
        return plausible([Detection(_clip_box(d.rect, rows, cols), float(d.confidence), self.name) for d in found])


TOO_SMALL_FOR_MMOD = 8  # pixels on the short side (2 or fewer fail in dlib 19.24)


class DlibFivePointAligner:
    """dlib's 5-point landmarks and ``get_face_chip``: the very chip ``compute_face_descriptor`` uses."""

    landmark_file = LANDMARKS_5_FILE
    landmark_order = DLIB_FIVE

    def __init__(self, chip_size: int = DLIB_CHIP_SIZE, padding: float = DLIB_CHIP_PADDING) -> None:
        self.chip_size = chip_size
        self.padding = padding
        self._predictor = dlib.shape_predictor(str(model_file(self.landmark_file)))
        # dlib's shape predictor object is not documented as thread-safe.
        self._lock = threading.Lock()

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        rect = dlib.rectangle(box.left, box.top, box.right - 1, box.bottom - 1)
        with self._lock:
            shape = self._predictor(image, rect)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    def chip(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        points = [dlib.point(int(x), int(y)) for x, y in landmarks]
        xs, ys = landmarks[:, 0], landmarks[:, 1]
        rect = dlib.rectangle(int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
        shape = dlib.full_object_detection(rect, points)
        return np.asarray(dlib.get_face_chip(image, shape, size=self.chip_size, padding=self.padding))


class DlibSixtyEightPointAligner(DlibFivePointAligner):
    """dlib's 68-point landmarks: a second, independent alignment of the same face for still images."""

    landmark_file = LANDMARKS_68_FILE
    landmark_order = "dlib68"  # only ever a second alignment: its 68 points are never a face's landmarks


class DlibReferenceEmbedder:
    """dlib's own ``compute_face_descriptor``: the slow reference the ONNX graph must equal."""

    chip_size = DLIB_CHIP_SIZE
    dimension = 128
    model_id = "dlib_resnet_v1:dlib"

    def __init__(self) -> None:
        self._model = dlib.face_recognition_model_v1(str(model_file(RESNET_FILE)))

    def raw(self, chips: np.ndarray) -> np.ndarray:
        return np.array([np.asarray(self._model.compute_face_descriptor(chip)) for chip in chips], dtype=np.float32)

    def embed(self, chips: np.ndarray) -> np.ndarray:
        return unit_rows(self.raw(chips))
