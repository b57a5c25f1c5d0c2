"""``FaceEngine``: detection, alignment, quality and embedding composed behind one small front door."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from openlfr.settings import Settings
from openlfr.vision.quality import assess
from openlfr.vision.tta import jitter_chips
from openlfr.vision.types import Box, Detection, Face, FaceAligner, FaceDetector, FaceEmbedder, unit_rows


@dataclass(frozen=True)
class EngineOptions:
    """Test-time options: more views of each face, averaged into one embedding (see ``tta.py``).

    Live video uses flip averaging only (one extra chip per face). Stills (enrolment, benchmarks) can afford
    more: a second alignment from dlib's 68-point landmarks and jittered copies of each chip.
    """

    flip_average: bool = True
    jitter: int = 0
    second_alignment: bool = False
    # When the main detector finds nothing, try the CNN detector (stills only: it is several times slower).
    fallback_detector: bool = False

    @property
    def views_key(self) -> str:
        """Names the views an embedding averages, for caches of embeddings."""
        return f"flip{int(self.flip_average)}-jitter{self.jitter}-align{2 if self.second_alignment else 1}"


class FaceEngine:
    def __init__(
        self,
        detector: FaceDetector,
        aligner: FaceAligner,
        embedder: FaceEmbedder,
        options: EngineOptions | None = None,
        fallback: FaceDetector | None = None,
        second_aligner: FaceAligner | None = None,
    ) -> None:
        self.detector = detector
        self.aligner = aligner
        self.embedder = embedder
        self.options = options or EngineOptions()
        self.fallback = fallback
        self.second_aligner = second_aligner if self.options.second_alignment else None

    @property
    def model_id(self) -> str:
        return self.embedder.model_id + ("+flip" if self.options.flip_average else "")

    def detect(self, image: np.ndarray) -> list[Detection]:
        image = np.ascontiguousarray(image)  # dlib refuses strided views such as region-of-interest crops
        found = self.detector.detect(image)
        if not found and self.fallback is not None:
            found = self.fallback.detect(image)
        return found

    def analyse(self, image: np.ndarray, detections: Sequence[Detection]) -> list[Face]:
        """Landmarks, chip and quality per detection; no embedding yet (embedding is the costly part)."""
        image = np.ascontiguousarray(image)
        faces = []
        for detection in detections:
            landmarks = self.aligner.landmarks(image, detection.box)
            chip = self.aligner.chip(image, landmarks)
            other_chips = []
            if self.second_aligner is not None:
                other_chips.append(self.second_aligner.chip(image, self.second_aligner.landmarks(image, detection.box)))
            faces.append(
                Face(
                    box=detection.box,
                    score=detection.score,
                    detector=detection.detector,
                    landmarks=landmarks,
                    quality=assess(detection.box, landmarks, chip),
                    chip=chip,
                    other_chips=other_chips,
                )
            )
        return faces

    def embed_chips(self, chips: np.ndarray) -> np.ndarray:
        """One embedding per chip, each averaged over the chip's views; all views in one ONNX Runtime call."""
        return self._embed_variants([[chip] for chip in chips])

    def embed(self, faces: Sequence[Face]) -> None:
        if not faces:
            return
        vectors = self._embed_variants([[face.chip, *face.other_chips] for face in faces])
        for face, vector in zip(faces, vectors, strict=True):
            face.embedding = vector
            face.model_id = self.model_id

    def _embed_variants(self, variants_per_face: list[list[np.ndarray]]) -> np.ndarray:
        """Each face has one chip per alignment; each chip gives views (itself, mirror, jitter mean).

        A chip's embedding is the normalised sum of its views' unit embeddings (jittered copies first averaged
        into one view); a face's is the normalised sum of its chips' embeddings.
        """
        if not variants_per_face:
            return np.zeros((0, self.embedder.dimension), dtype=np.float32)
        jitter = self.options.jitter
        views: list[np.ndarray] = []
        for variants in variants_per_face:
            for chip in variants:
                views.append(chip)
                if self.options.flip_average:
                    views.append(chip[:, ::-1])
                if jitter:
                    views.extend(jitter_chips(chip, jitter))
        vectors = self.embedder.embed(np.stack(views))
        per_chip = 1 + int(self.options.flip_average) + jitter
        result = np.empty((len(variants_per_face), vectors.shape[1]), dtype=np.float32)
        cursor = 0
        for index, variants in enumerate(variants_per_face):
            total = np.zeros(vectors.shape[1], dtype=np.float64)
            for _ in variants:
                block = vectors[cursor : cursor + per_chip]
                cursor += per_chip
                plain = block[: per_chip - jitter].sum(axis=0)
                if jitter:
                    plain = plain + unit_rows(block[per_chip - jitter :].mean(axis=0))
                total += unit_rows(plain)
            result[index] = unit_rows(total)
        return result

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


def model_id_for(settings: Settings) -> str:
    """The embedding model id an engine built from these settings produces, without loading any model."""
    from openlfr.errors import ModelError
    from openlfr.vision.onnx_embedder import DLIB_RESNET_ID, arcface_model_id

    if settings.embedder_model is not None:
        if not settings.embedder_model.is_file():
            raise ModelError(f"{settings.embedder_model}: no such model file")
        base = arcface_model_id(settings.embedder_model)
    else:
        base = DLIB_RESNET_ID
    return base + ("+flip" if settings.flip_average else "")


def build_engine(settings: Settings, *, stills: bool = False, detector: str | None = None) -> FaceEngine:
    """The product engine from settings: dlib detector and landmarks, embedder on ONNX Runtime.

    ``stills``: the profile for single photos (enrolment, benchmarks), where accuracy is worth more time: the CNN
    detector as a fallback and the stills test-time views. Live video uses the fast profile.
    """
    from openlfr.vision.dlib_backend import (
        DlibFivePointAligner,
        DlibSixtyEightPointAligner,
        MmodDetector,
        make_detector,
    )
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
    backup = MmodDetector(upsample=1) if stills and main.name != "mmod" else None
    second = stills and settings.stills_second_alignment and settings.embedder_model is None
    options = EngineOptions(
        flip_average=settings.flip_average,
        jitter=settings.stills_jitter if stills else 0,
        second_alignment=second,
        fallback_detector=stills,
    )
    return FaceEngine(
        main,
        aligner,
        embedder,
        options,
        fallback=backup,
        second_aligner=DlibSixtyEightPointAligner() if second else None,
    )
