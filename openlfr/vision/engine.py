"""``FaceEngine``: detection, alignment, quality and embedding composed behind one small front door."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
from PIL import Image

from openlfr.errors import ModelError
from openlfr.face_models import DETECTORS as DETECTOR_SPECS
from openlfr.face_models import LANDMARK_DETECTOR, EmbedderSpec, detector_spec, embedder_spec, load
from openlfr.settings import Settings
from openlfr.vision.model_files import installed_model
from openlfr.vision.providers import with_execution_provider
from openlfr.vision.quality import assess
from openlfr.vision.tta import jitter_chips
from openlfr.vision.types import (
    EYES_NOSE_MOUTH,
    Box,
    Detection,
    Face,
    FaceAligner,
    FaceDetector,
    FaceEmbedder,
    unit_rows,
)


def dlib_style_box(detection: Detection) -> Box:
    """The box to give dlib's landmark predictors for this detection: mapped where the detector's registry entry
    says its boxes differ from dlib's (RetinaFace's), as it is otherwise (dlib's own, a given box)."""
    spec = DETECTOR_SPECS.get(detection.detector)
    if spec is None or spec.dlib_box is None:
        return detection.box
    dx, dy, sw, sh = spec.dlib_box
    box = detection.box
    left, top = box.left + dx * box.width, box.top + dy * box.height
    return Box(round(left), round(top), round(left + sw * box.width), round(top + sh * box.height))


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
        # The second opinion's engine (``second_engine``), where enrolment asks for one: it embeds the chips this
        # engine cut, so a reference photo gets both models' embeddings from one analysis.
        self.second: FaceEngine | None = None

    @property
    def model_id(self) -> str:
        return self.embedder.model_id + ("+flip" if self.options.flip_average else "")

    def detect(self, image: np.ndarray, max_side: int | None = None) -> list[Detection]:
        """Faces in ``image``; with ``max_side``, searched on a copy no larger than that (long side), the
        detections given back in the full image's pixels."""
        image = np.ascontiguousarray(image)  # dlib refuses strided views such as region-of-interest crops
        rows, cols = image.shape[:2]
        factor = 1.0 if max_side is None else min(1.0, max_side / max(rows, cols))
        if factor < 1.0:
            size = (max(1, round(cols * factor)), max(1, round(rows * factor)))
            small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
            return [d.moved(cols / size[0]) for d in self.detect(small)]
        found = self.detector.detect(image)
        if not found and self.fallback is not None:
            found = self.fallback.detect(image)
        return found

    def analyse(self, image: np.ndarray, detections: Sequence[Detection]) -> list[Face]:
        """Landmarks, chip and quality per detection; no embedding yet (embedding is the costly part).

        The detector's five landmarks, when it gave them, are the face's landmarks (quality is measured on
        them) and feed an aligner that takes them; an aligner with a layout of its own (dlib's chip for dlib's
        network) finds its landmarks from the box.
        """
        image = np.ascontiguousarray(image)
        faces = []
        for detection in detections:
            given = detection.landmarks
            if given is not None and self.aligner.landmark_order == EYES_NOSE_MOUTH:
                chip_points = given
            elif self.aligner.landmark_order == EYES_NOSE_MOUTH:
                chip_points = self.aligner.landmarks(image, detection.box)
            else:
                chip_points = self.aligner.landmarks(image, dlib_style_box(detection))
            chip = self.aligner.chip(image, chip_points)
            if given is not None:
                points, order = given, EYES_NOSE_MOUTH
            else:
                points, order = chip_points, self.aligner.landmark_order
            other_chips = []
            if self.second_aligner is not None:
                second_points = self.second_aligner.landmarks(image, dlib_style_box(detection))
                other_chips.append(self.second_aligner.chip(image, second_points))
            faces.append(
                Face(
                    box=detection.box,
                    score=detection.score,
                    detector=detection.detector,
                    landmarks=points,
                    quality=assess(image, detection.box, points, order),
                    chip=chip,
                    landmark_order=order,
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
    from openlfr.vision.onnx_embedder import arcface_model_id

    if settings.embedder_model is not None:
        if not settings.embedder_model.is_file():
            raise ModelError(f"{settings.embedder_model}: no such model file")
        base = arcface_model_id(settings.embedder_model)
    else:
        base = embedder_spec(settings.embedder).model_id
    return base + ("+flip" if settings.flip_average else "")


@with_execution_provider
def require_models(settings: Settings, *, stills: bool = False) -> None:
    """Check, without loading anything, that every model file an engine of these settings would run from is in
    the cache: ``ModelNotBuilt`` naming ``openlfr models build`` here, in the caller's process, rather than a
    worker process dying while it builds its engine."""
    detector = detector_spec(settings.detector)
    detectors = [detector, *([detector_spec(detector.stills_fallback)] if stills and detector.stills_fallback else [])]
    if settings.embedder_model is None:
        embedder = embedder_spec(settings.embedder)
        files = [(embedder.cache_file, embedder.sha256, embedder.name)]
        if embedder.aligner == "arcface" and not detector.gives_landmarks:
            detectors.append(detector_spec(LANDMARK_DETECTOR))
    else:
        files = []
    files += [(spec.cache_file, spec.sha256, spec.name) for spec in detectors if spec.cache_file is not None]
    for file_name, sha256, label in files:
        installed_model(settings.cache_dir, file_name, sha256, label)


@with_execution_provider
def build_detector(
    settings: Settings,
    name: str | None = None,
    *,
    scale: float | None = None,
    upsample: int | None = None,
    threads: int | None = None,
) -> FaceDetector:
    """The detector the settings name (``detector``), or ``name``, built from its registry entry.

    ``scale`` (detectors tuned by scale: resize before the network; default ``detector_scale``), ``upsample``
    (dlib's: default ``upsample``) and ``threads`` (ONNX Runtime: default ``onnx_threads``) override the settings.
    A model file missing from the cache is ``ModelNotBuilt``, naming ``openlfr models build``.
    """
    spec = detector_spec(name or settings.detector)
    model_path = None
    if spec.cache_file is not None:
        model_path = installed_model(settings.cache_dir, spec.cache_file, spec.sha256, spec.name)
    opened: FaceDetector = load(spec.implementation)(
        model_path,
        threads=settings.onnx_threads if threads is None else threads,
        scale=settings.detector_scale if scale is None else scale,
        min_score=settings.detector_min_score,
        upsample=settings.upsample if upsample is None else upsample,
    )
    return opened


def arcface_aligner(detector: FaceDetector, settings: Settings, chip_size: int) -> FaceAligner:
    """Chips on ArcFace's 5-point template, for embedders trained on them.

    The five points come with the detections of a detector that gives landmarks; a face with a bare box
    (another detector, a given box) gets them from the registry's landmark detector run around the box.
    """
    from openlfr.vision.align import ArcFaceAligner, LandmarkSource

    gives_points = detector_spec(detector.name).gives_landmarks
    source = detector if gives_points else build_detector(settings, LANDMARK_DETECTOR)
    return ArcFaceAligner(cast(LandmarkSource, source), chip_size)


@with_execution_provider
def build_embedder(settings: Settings) -> tuple[FaceEmbedder, EmbedderSpec | None]:
    """The embedder the settings choose, and its registry entry (None for a user-supplied ArcFace-style file)."""
    if settings.embedder_model is not None:
        from openlfr.vision.onnx_embedder import ArcFaceEmbedder

        return ArcFaceEmbedder(settings.embedder_model, settings.onnx_threads), None
    spec = embedder_spec(settings.embedder)
    model_path = installed_model(settings.cache_dir, spec.cache_file, spec.sha256, spec.name)
    embedder: FaceEmbedder = load(spec.implementation)(model_path, settings.onnx_threads)
    if embedder.model_id != spec.model_id:  # the id names the embedding space: stored, compared, calibrated
        raise ModelError(
            f"{spec.implementation} embeds as {embedder.model_id}, its registry entry says {spec.model_id}"
        )
    return embedder, spec


def second_opinion_spec(settings: Settings) -> EmbedderSpec | None:
    """The second opinion's embedder entry (``OPENLFR_SECOND_OPINION``), or None where it is off or cannot embed
    the first model's chips (a user-supplied file, dlib's own chip, the same model twice)."""
    if settings.second_opinion == "off" or settings.embedder_model is not None:
        return None
    first, second = embedder_spec(settings.embedder), embedder_spec(settings.second_opinion)
    if first.name == second.name or first.aligner != second.aligner or first.chip_size != second.chip_size:
        return None
    return second


def second_model_id(settings: Settings) -> str | None:
    """The embedding model id the second opinion stores and compares (None: no second opinion here)."""
    spec = second_opinion_spec(settings)
    return None if spec is None else spec.model_id + ("+flip" if settings.flip_average else "")


def second_engine(engine: FaceEngine, settings: Settings, *, stills: bool) -> FaceEngine | None:
    """An engine embedding ``engine``'s chips with the second opinion's model (same detector and aligner, the
    profile's views), or None where the settings have no second opinion."""
    spec = second_opinion_spec(settings)
    if spec is None:
        return None
    embedder, _ = build_embedder(settings.model_copy(update={"embedder": spec.name, "embedder_model": None}))
    options = EngineOptions(flip_average=settings.flip_average, jitter=settings.stills_jitter if stills else 0)
    return FaceEngine(engine.detector, engine.aligner, embedder, options)


@with_execution_provider
def build_engine(
    settings: Settings, *, stills: bool = False, detector: str | None = None, second_opinion: bool = False
) -> FaceEngine:
    """The product engine from settings, each part from its registry entry: the chosen detector, the embedder on
    ONNX Runtime, and the aligner the embedder's entry names (dlib's own chip for dlib's ResNet, found from the
    box whichever detector gave it; the ArcFace chip from the detector's five points for the others).

    ``stills``: the profile for single photos (enrolment, benchmarks), where accuracy is worth more time: the
    detector's stills fallback and the stills test-time views. Live video uses the fast profile.
    ``second_opinion``: enrolment's engine, which also embeds each accepted face with the second opinion's model
    (``engine.second``) when the settings have one.
    """
    from openlfr.vision.dlib_backend import DlibFivePointAligner, DlibSixtyEightPointAligner

    main = build_detector(settings, detector)
    embedder, spec = build_embedder(settings)
    aligner: FaceAligner
    if spec is not None and spec.aligner == "dlib":
        aligner = DlibFivePointAligner()
    else:
        aligner = arcface_aligner(main, settings, embedder.chip_size)
    fallback_name = detector_spec(main.name).stills_fallback
    backup = build_detector(settings, fallback_name, upsample=1) if stills and fallback_name else None
    second = stills and settings.stills_second_alignment and spec is not None and spec.second_alignment
    options = EngineOptions(
        flip_average=settings.flip_average,
        jitter=settings.stills_jitter if stills else 0,
        second_alignment=second,
        fallback_detector=stills,
    )
    engine = FaceEngine(
        main,
        aligner,
        embedder,
        options,
        fallback=backup,
        second_aligner=DlibSixtyEightPointAligner() if second else None,
    )
    if second_opinion:
        engine.second = second_engine(engine, settings, stills=stills)
    return engine
