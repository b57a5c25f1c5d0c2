"""One reference photo -> the face to enrol (quality, embedding, a JPEG of the face region) or the reason not.

``analyse_photo`` reads no database and writes nothing: enrolment calls it for each photo first, and only
when every photo of a person passes does anything reach the store. Refusals of a readable photo and of an
unreadable one come back the same way, as a reason, so a folder import can report them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from openlfr.enrolment.gate import FaceChoice, FacePick, QualityGate, enrolment_refusal, pick_face
from openlfr.errors import ImageError
from openlfr.settings import Settings
from openlfr.vision.engine import FaceEngine
from openlfr.vision.image_io import encode_jpeg, load_rgb
from openlfr.vision.model_files import file_sha256
from openlfr.vision.types import Box, Detection, Face, Quality

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
# The stored face picture: the face box widened by this fraction on each side, at most this many pixels.
FACE_MARGIN = 0.4
FACE_JPEG_MAX_SIDE = 400


@dataclass
class AcceptedFace:
    box: Box
    detector: str
    detector_score: float
    quality: Quality
    embedding: np.ndarray = field(repr=False)
    model_id: str
    face_jpeg: bytes = field(repr=False)
    # The second opinion's embedding of the same chip, by its model id (``FaceEngine.second``; empty without one):
    # stored as a row of that model beside the first's, so the live second opinion has the reference to compare.
    second_embeddings: dict[str, np.ndarray] = field(default_factory=dict, repr=False)


@dataclass
class PhotoResult:
    """What one photo gave: ``face`` when it passed, else ``reason``."""

    source: str
    sha256: str
    face: AcceptedFace | None = None
    reason: str | None = None
    faces_found: int = 0

    @property
    def accepted(self) -> bool:
        return self.face is not None


@dataclass
class ChosenFace:
    """The face a choice takes from a photo, analysed (landmarks, chip, quality) and not yet embedded."""

    detections: list[Detection]  # every face found, boxes in the photo's pixels
    pick: FacePick
    face: Face | None  # None when the choice takes no face (``pick.problem`` says why)


def choose_and_analyse(engine: FaceEngine, pixels: np.ndarray, choice: FaceChoice, max_side: int) -> ChosenFace:
    """Detect on a copy no larger than ``max_side`` (the detector's anchors stop short of a large face), take the
    chosen face and analyse it; enrolment, photo search and re-embedding share these steps."""
    detections = engine.detect(pixels, max_side=max_side)
    pick = pick_face([d.box for d in detections], choice)
    face = None if pick.index is None else engine.analyse(pixels, [detections[pick.index]])[0]
    return ChosenFace(detections, pick, face)


def embed_face(engine: FaceEngine, face: Face) -> np.ndarray:
    """The embedding of an analysed face, made last: it is the costly step, spent only on a face that is wanted."""
    engine.embed([face])
    assert face.embedding is not None and face.model_id is not None
    return face.embedding


def face_picture(image: np.ndarray, box: Box) -> bytes:
    """A JPEG of the face region only, so that nobody else in the photo is kept."""
    rows, cols = image.shape[:2]
    margin_x, margin_y = round(box.width * FACE_MARGIN), round(box.height * FACE_MARGIN)
    left, top = max(0, box.left - margin_x), max(0, box.top - margin_y)
    right, bottom = min(cols, box.right + margin_x), min(rows, box.bottom + margin_y)
    crop = Image.fromarray(image[top:bottom, left:right])
    crop.thumbnail((FACE_JPEG_MAX_SIDE, FACE_JPEG_MAX_SIDE), Image.Resampling.LANCZOS)
    return encode_jpeg(np.asarray(crop), quality=90)


def analyse_photo(
    engine: FaceEngine,
    path: Path,
    gate: QualityGate,
    choice: FaceChoice,
    *,
    max_pixels: int,
    detect_max_side: int,
) -> PhotoResult:
    source = str(path)
    try:
        pixels = load_rgb(path, max_pixels)
        sha = file_sha256(path)
    except ImageError as exc:
        return PhotoResult(source, "", reason=_without_path(str(exc), source))
    except OSError as exc:
        return PhotoResult(source, "", reason=f"cannot read the file: {exc.strerror}")
    chosen = choose_and_analyse(engine, pixels, choice, detect_max_side)
    found = len(chosen.detections)
    face = chosen.face
    if face is None:
        return PhotoResult(source, sha, reason=enrolment_refusal(chosen.pick, found, choice), faces_found=found)
    refusals = gate.refusals(face.quality)
    if refusals:
        return PhotoResult(source, sha, reason="; ".join(refusals), faces_found=found)
    embedding = embed_face(engine, face)
    assert face.model_id is not None
    second = {}
    if engine.second is not None:
        second[engine.second.model_id] = engine.second.embed_chips(face.chip[None])[0]
    return PhotoResult(
        source,
        sha,
        face=AcceptedFace(
            box=face.box,
            detector=face.detector,
            detector_score=float(face.score),
            quality=face.quality,
            embedding=embedding,
            model_id=face.model_id,
            face_jpeg=face_picture(pixels, face.box),
            second_embeddings=second,
        ),
        faces_found=found,
    )


def analyse_photos(
    engine: FaceEngine, paths: Sequence[Path], gate: QualityGate, choice: FaceChoice, settings: Settings
) -> list[PhotoResult]:
    """Each photo through ``analyse_photo`` with the image limits of the settings."""
    return [
        analyse_photo(
            engine,
            path,
            gate,
            choice,
            max_pixels=settings.max_image_pixels,
            detect_max_side=settings.enrol_detect_max_side,
        )
        for path in paths
    ]


def _without_path(message: str, source: str) -> str:
    """ImageError messages start with the path; the report already names the file."""
    prefix = f"{source}: "
    return message[len(prefix) :] if message.startswith(prefix) else message
