"""``FaceEngine``: detection, alignment, quality and embedding composed behind one small front door."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from openlfr.settings import Settings
from openlfr.vision.quality import assess
from openlfr.vision.types import Box, Detection, Face, FaceAligner, FaceDetector, FaceEmbedder


@dataclass(frozen=True)
class EngineOptions:
    """Test-time options. Flip averaging: embed the chip and its mirror image and average the two."""

    flip_average: bool = True
    # Stills only (enrolment, benchmarks): when the main detector finds nothing, try the CNN detector.
    fallback_detector: bool = False


class FaceEngine:
    def __init__(
        self,
        detector: FaceDetector,
        aligner: FaceAligner,
        embedder: FaceEmbedder,
        options: EngineOptions | None = None,
        fallback: FaceDetector | None = None,
    ) -> None:
        self.detector = detector
        self.aligner = aligner
        self.embedder = embedder
        self.options = options or EngineOptions()
        self.fallback = fallback

    @property
    def model_id(self) -> str:
        return self.embedder.model_id + ("+flip" if self.options.flip_average else "")

    def detect(self, image: np.ndarray) -> list[Detection]:
        found = self.detector.detect(image)
        if not found and self.fallback is not None:
            found = self.fallback.detect(image)
        return found

    def analyse(self, image: np.ndarray, detections: Sequence[Detection]) -> list[Face]:
        """Landmarks, chip and quality per detection; no embedding yet (embedding is the costly part)."""
        faces = []
        for detection in detections:
            landmarks = self.aligner.landmarks(image, detection.box)
            chip = self.aligner.chip(image, landmarks)
            faces.append(
                Face(
                    box=detection.box,
                    score=detection.score,
                    detector=detection.detector,
                    landmarks=landmarks,
                    quality=assess(detection.box, landmarks, chip),
                    chip=chip,
                )
            )
        return faces

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        """All chips in one ONNX Runtime call (twice the batch with flip averaging)."""
        if len(chips) == 0:
            return np.zeros((0, self.embedder.dimension), dtype=np.float32)
        if not self.options.flip_average:
            return self.embedder.embed(chips)
        both = self.embedder.embed(np.concatenate([chips, chips[:, :, ::-1, :]]))
        mean = both[: len(chips)] + both[len(chips) :]
        return (mean / np.linalg.norm(mean, axis=1, keepdims=True)).astype(np.float32)

    def embed(self, faces: Sequence[Face]) -> None:
        if not faces:
            return
        vectors = self.embed_chips(np.stack([face.chip for face in faces]))
        for face, vector in zip(faces, vectors, strict=True):
            face.embedding = vector
            face.model_id = self.model_id

    def faces(self, image: np.ndarray, embed: bool = True) -> list[Face]:
        found = self.analyse(image, self.detect(image))
        if embed:
            self.embed(found)
        return found

    def face_at(self, image: np.ndarray, box: Box) -> Face:
        """Analyse and embed a face at a known box (for example the centre of a cropped portrait)."""
        (face,) = self.analyse(image, [Detection(box, 0.0, "given")])
        self.embed([face])
        return face


def build_engine(settings: Settings, *, fallback: bool = False, detector: str | None = None) -> FaceEngine:
    """The product engine from settings: dlib detector and landmarks, embedder on ONNX Runtime."""
    from openlfr.vision.dlib_backend import DlibFivePointAligner, MmodDetector, make_detector
    from openlfr.vision.onnx_embedder import (
        ArcFaceEmbedder,
        DlibResnetEmbedder,
        TemplateAligner,
        resnet_onnx_path,
    )

    landmarker = DlibFivePointAligner()
    aligner: FaceAligner
    embedder: FaceEmbedder
    if settings.embedder_model is not None:
        arcface = ArcFaceEmbedder(settings.embedder_model, settings.onnx_threads)
        embedder = arcface
        aligner = TemplateAligner(landmarker, arcface.template, arcface.chip_size)
    else:
        embedder = DlibResnetEmbedder(resnet_onnx_path(settings.cache_dir), settings.onnx_threads)
        aligner = landmarker
    main = make_detector(detector or settings.detector, settings.upsample)
    backup = MmodDetector(upsample=1) if fallback and main.name != "mmod" else None
    return FaceEngine(
        main,
        aligner,
        embedder,
        EngineOptions(flip_average=settings.flip_average, fallback_detector=fallback),
        fallback=backup,
    )
