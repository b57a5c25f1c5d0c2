"""A detection becomes a face only if it can be one: a mosaic of 1,008 small faces is not one face 4,500 px tall
(the search path's ``face=largest`` took it), while real faces, small and large, are still found."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from openlfr.enrolment.photos import choose_and_analyse
from openlfr.modelbuild.models import retinaface_onnx_path
from openlfr.settings import Settings
from openlfr.vision.plausible import implausible
from openlfr.vision.retinaface import RetinaFaceDetector
from openlfr.vision.types import Box, Detection
from tests.conftest import require_data

MOSAIC_SIDE = 4800
ENROL_DETECT_MAX_SIDE = Settings().enrol_detect_max_side


@pytest.fixture(scope="module")
def detector() -> RetinaFaceDetector:
    return RetinaFaceDetector(retinaface_onnx_path(Settings().cache_dir), threads=1)


def mosaic(astronaut: np.ndarray, rows: int = 28, cols: int = 36) -> np.ndarray:
    """The astronaut picture, shrunk to tiles of 133x171 px, 28 rows of 36: 1,008 faces about 35 px tall."""
    tile = np.asarray(
        Image.fromarray(astronaut).resize((MOSAIC_SIDE // cols, MOSAIC_SIDE // rows), Image.Resampling.BILINEAR)
    )
    picture = np.zeros((MOSAIC_SIDE, MOSAIC_SIDE, 3), np.uint8)
    tiled = np.tile(tile, (rows, cols, 1))
    picture[: tiled.shape[0], : tiled.shape[1]] = tiled
    return picture


def test_a_mosaic_of_small_faces_is_not_one_giant_face(detector, engine, astronaut) -> None:  # type: ignore[no-untyped-def]
    picture = mosaic(astronaut)
    shrunk = np.asarray(Image.fromarray(picture).resize((640, 640), Image.Resampling.BILINEAR))
    tallest = max((d.box.height for d in detector.detect(shrunk)), default=0)
    assert tallest < 64, f"a face {tallest * MOSAIC_SIDE // 640} px tall in a mosaic of 35 px faces"
    # The photo-search and enrolment path (a copy no larger than enrol_detect_max_side, the largest face taken)
    chosen = choose_and_analyse(engine, picture, "largest", ENROL_DETECT_MAX_SIDE)
    assert all(d.box.height < MOSAIC_SIDE // 8 for d in chosen.detections), [d.box for d in chosen.detections]
    assert chosen.face is None or chosen.face.box.height < MOSAIC_SIDE // 8


def test_real_faces_small_and_large_are_still_found(detector, astronaut) -> None:  # type: ignore[no-untyped-def]
    for factor in (0.5, 1, 2, 3, 4):  # the face about 60 to 480 px tall: large ones get the second look
        side = round(512 * factor)
        picture = np.asarray(Image.fromarray(astronaut).resize((side, side), Image.Resampling.BILINEAR))
        heights = [d.box.height for d in detector.detect(picture)]
        assert any(100 * factor <= h <= 150 * factor for h in heights), (factor, heights)


def test_lfw_faces_enlarged_are_still_found(detector) -> None:  # type: ignore[no-untyped-def]
    people = sorted(require_data("lfw", "images").iterdir())[::97][:30]
    found = 0
    for person in people:
        photo: Path = sorted(person.glob("*.jpg"))[0]
        picture = np.asarray(Image.open(photo).convert("RGB").resize((640, 640), Image.Resampling.BILINEAR))
        centre = Box(220, 220, 420, 420)  # LFW's face sits in the middle; enlarged 2.56x it is ~280 px tall
        found += any(d.box.height > 200 and d.box.iou(centre) > 0.2 for d in detector.detect(picture))
    assert found == len(people), f"{found} of {len(people)} enlarged LFW faces found"


def test_no_face_has_an_impossible_shape_or_layout() -> None:
    points = np.array([[30.0, 40.0], [70.0, 40.0], [50.0, 60.0], [35.0, 80.0], [65.0, 80.0]])
    face = Detection(Box(0, 0, 100, 120), 0.9, "retinaface", points)
    assert implausible(face) is None
    assert implausible(Detection(Box(0, 0, 100, 120), 0.9, "hog")) is None
    assert implausible(Detection(Box(0, 0, 400, 40), 0.9, "hog")) is not None  # ten times wider than tall
    upside_down = points * np.array([1.0, -1.0]) + np.array([0.0, 120.0])
    assert implausible(Detection(Box(0, 0, 100, 120), 0.9, "retinaface", upside_down)) is not None
    mirrored = points[:, ::-1]  # x and y swapped: the mouth on the wrong side of the eye line
    assert implausible(Detection(Box(0, 0, 120, 120), 0.9, "retinaface", mirrored)) is not None
    apart = points * np.array([4.0, 1.0])
    assert implausible(Detection(Box(0, 0, 100, 120), 0.9, "retinaface", apart)) is not None
