import numpy as np
import pytest

from openlfr.errors import ModelError
from openlfr.modelbuild.models import resnet_onnx_path
from openlfr.settings import Settings
from openlfr.vision.dlib_backend import DlibReferenceEmbedder
from openlfr.vision.engine import build_detector, build_engine, model_id_for
from openlfr.vision.onnx_embedder import DlibResnetEmbedder
from openlfr.vision.quality import pose_from_landmarks
from openlfr.vision.types import DLIB_FIVE, EYES_NOSE_MOUTH


@pytest.fixture(scope="module")
def dlib_engine():  # type: ignore[no-untyped-def]
    """RetinaFace boxes, dlib's landmarks and chip, dlib's ResNet."""
    return build_engine(Settings(embedder="dlib"))


def inside(points: np.ndarray, box) -> bool:  # type: ignore[no-untyped-def]
    return bool(
        (points[:, 0] >= box.left).all()
        and (points[:, 0] <= box.right).all()
        and (points[:, 1] >= box.top).all()
        and (points[:, 1] <= box.bottom).all()
    )


def test_astronaut_has_exactly_one_face_with_five_landmarks_and_sane_quality(engine, astronaut):
    faces = engine.faces(astronaut)
    assert len(faces) == 1  # HOG also boxed the mission patch on her suit; RetinaFace does not
    (face,) = faces
    assert face.detector == "retinaface" and face.score > 0.9
    assert face.landmark_order == EYES_NOSE_MOUTH and face.landmarks.shape == (5, 2)
    assert inside(face.landmarks, face.box)
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    assert face.chip.shape == (engine.embedder.chip_size, engine.embedder.chip_size, 3)
    assert 30 < face.quality.inter_eye_px < 80
    assert abs(face.quality.yaw_deg) < 15 and abs(face.quality.pitch_deg) < 15
    assert face.quality.sharpness > 20
    assert face.embedding is not None and face.embedding.shape == (engine.embedder.dimension,)
    assert abs(float(np.linalg.norm(face.embedding)) - 1.0) < 1e-5
    assert face.model_id == model_id_for(Settings())


def test_onnx_graph_equals_dlib_on_a_real_face(dlib_engine, astronaut):
    (face,) = dlib_engine.faces(astronaut, embed=False)
    assert face.chip.shape == (150, 150, 3)  # dlib's own chip, from dlib's landmarks inside RetinaFace's box
    ours = DlibResnetEmbedder(resnet_onnx_path(Settings().cache_dir)).raw(face.chip[None])
    theirs = DlibReferenceEmbedder().raw(face.chip[None])
    assert float(np.abs(ours - theirs).max()) <= 1e-4


def test_dlib_embedder_on_retinaface_boxes_keeps_the_detector_landmarks_for_quality(dlib_engine, engine, astronaut):
    (face,) = dlib_engine.faces(astronaut)
    (default,) = engine.faces(astronaut, embed=False)
    assert face.model_id == "dlib_resnet_v1+flip"
    assert face.landmark_order == EYES_NOSE_MOUTH
    assert np.allclose(face.landmarks, default.landmarks)
    assert face.quality == default.quality  # quality does not depend on the embedder's chip


def test_hog_stays_selectable_with_dlib_landmarks(astronaut):
    hog = build_engine(Settings(detector="hog", embedder="dlib"))
    faces = hog.faces(astronaut, embed=False)
    face = max(faces, key=lambda f: f.score)
    assert face.detector == "hog" and face.score > 0.8
    assert face.landmark_order == DLIB_FIVE and inside(face.landmarks, face.box)
    assert abs(face.quality.yaw_deg) < 15 and abs(face.quality.pitch_deg) < 15
    with pytest.raises(ModelError, match="unknown detector 'haar': choose one of retinaface, hog, mmod"):
        build_detector(Settings(), "haar")


def test_batched_embedding_equals_one_by_one(engine, astronaut):
    (face,) = engine.faces(astronaut, embed=False)
    chip = face.chip
    chips = np.stack([chip, chip[:, ::-1], np.roll(chip, 3, axis=0)])
    together = engine.embed_chips(chips)
    alone = np.concatenate([engine.embed_chips(c[None]) for c in chips])
    assert np.abs(together - alone).max() < 1e-5
    # the three chips are different inputs, so their embeddings must differ
    assert float(together[0] @ together[2]) < 0.9999


def test_blurred_face_scores_lower_sharpness(engine, astronaut):
    from PIL import Image, ImageFilter

    (best,) = engine.detect(astronaut)
    (sharp,) = engine.analyse(astronaut, [best])
    blurred_image = np.asarray(Image.fromarray(astronaut).filter(ImageFilter.GaussianBlur(3)))
    (blurred,) = engine.analyse(blurred_image, [best])
    assert blurred.quality.sharpness < sharp.quality.sharpness / 3


def test_pose_follows_the_face_mirrored_and_turned(engine, astronaut):
    from PIL import Image

    (face,) = engine.faces(astronaut, embed=False)
    mirrored = np.ascontiguousarray(astronaut[:, ::-1])
    (flipped,) = engine.faces(mirrored, embed=False)
    assert flipped.quality.roll_deg == pytest.approx(-face.quality.roll_deg, abs=3.0)
    # PIL turns anticlockwise on screen: the eye line then runs up to the right (a negative roll in image axes)
    turned = np.asarray(
        Image.fromarray(astronaut).rotate(20, center=face.box.centre, resample=Image.Resampling.BILINEAR)
    )
    (tilted,) = engine.faces(turned, embed=False)
    assert tilted.quality.roll_deg == pytest.approx(face.quality.roll_deg - 20, abs=4.0)
    # a face turned to one side: the nose tip moves off the midline towards that side
    points = face.landmarks.copy()
    points[2, 0] += face.quality.inter_eye_px * 0.3
    yaw, _, _ = pose_from_landmarks(points, EYES_NOSE_MOUTH)
    assert yaw > face.quality.yaw_deg + 15
    # ... and its mirror image turns the other way by as much
    mirror = points[[1, 0, 2, 4, 3]] * np.array([-1.0, 1.0])
    assert pose_from_landmarks(mirror, EYES_NOSE_MOUTH)[0] == pytest.approx(-yaw)


def test_detect_on_a_smaller_copy_gives_full_size_coordinates(engine, astronaut):
    (full,) = engine.detect(astronaut)
    (small,) = engine.detect(astronaut, max_side=256)
    assert small.box.iou(full.box) > 0.7
    assert small.landmarks is not None and full.landmarks is not None
    assert np.abs(small.landmarks - full.landmarks).max() < 0.1 * full.box.width


def test_stills_profile_adds_views_deterministically(astronaut):
    from openlfr.vision.tta import jitter_chips

    stills = build_engine(Settings(stills_jitter=4, embedder="dlib"), stills=True)
    assert stills.options.second_alignment and stills.fallback is not None
    (face,) = stills.faces(astronaut)
    assert len(face.other_chips) == 1 and face.other_chips[0].shape == (150, 150, 3)
    (again,) = stills.faces(astronaut)
    assert np.array_equal(face.embedding, again.embedding)  # jitter is seeded by the chip itself
    (live_face,) = build_engine(Settings(embedder="dlib")).faces(astronaut)
    # more views of the same face: a different vector, still the same person by a wide margin
    assert face.embedding is not None and live_face.embedding is not None
    similarity = float(face.embedding @ live_face.embedding)
    assert 0.95 < similarity < 0.99999
    copies = jitter_chips(face.chip, 3)
    assert copies.shape == (3, 150, 150, 3) and not np.array_equal(copies[0], copies[1])


def test_region_of_interest_views_are_accepted(engine, astronaut):
    crop = astronaut[40:300, 100:400]  # a strided view, as a camera's region of interest is
    assert not crop.flags["C_CONTIGUOUS"]
    faces = engine.faces(crop)
    assert any(f.score > 0.8 for f in faces)


def test_dlib_landmarks_from_a_mapped_retinaface_box_agree_with_those_from_dlibs_own_box(dlib_engine):
    from openlfr.bench.lfw import central_face
    from openlfr.vision.engine import dlib_style_box
    from openlfr.vision.image_io import load_rgb
    from tests.conftest import require_data

    paths = sorted(require_data("lfw", "images").glob("B*/*_0001.jpg"))[:40]
    hog = build_detector(Settings(), "hog")
    raw, mapped = [], []
    for path in paths:
        pixels = load_rgb(path, 10_000_000)
        retina = central_face(dlib_engine.detect(pixels), *pixels.shape[:2])
        own_box = central_face(hog.detect(pixels), *pixels.shape[:2])
        if retina is None or own_box is None:
            continue
        assert dlib_style_box(own_box) == own_box.box  # dlib's own boxes go through as they are
        own = dlib_engine.aligner.landmarks(pixels, own_box.box)
        eye_distance = float(np.linalg.norm(own[0:2].mean(axis=0) - own[2:4].mean(axis=0)))
        raw.append(np.abs(dlib_engine.aligner.landmarks(pixels, retina.box) - own).max() / eye_distance)
        mapped.append(np.abs(dlib_engine.aligner.landmarks(pixels, dlib_style_box(retina)) - own).max() / eye_distance)
    assert len(mapped) >= 30
    assert np.median(mapped) < 0.75 * np.median(raw) and np.median(mapped) < 0.04


def test_coinciding_landmarks_give_a_quality_every_gate_refuses_not_a_crash(engine, astronaut):
    from openlfr.vision.types import Box, Detection

    degenerate = Detection(Box(200, 80, 260, 150), 0.6, "retinaface", np.full((5, 2), 230.0))
    (face,) = engine.analyse(astronaut, [degenerate])
    assert face.quality.inter_eye_px == 0.0 and face.quality.sharpness == 0.0
    assert face.chip.shape == (engine.embedder.chip_size, engine.embedder.chip_size, 3)


def test_a_photo_stored_sideways_with_an_exif_orientation_is_read_upright(engine, astronaut, tmp_path):
    """Phones store a portrait photo sideways and say so in EXIF (orientation 6: turn 90 degrees clockwise to
    view); enrolment and photo search read the picture as a viewer shows it."""
    from PIL import Image

    from openlfr.vision.image_io import decode_rgb, load_rgb

    upright = astronaut[:, :400]  # not square, so a sideways read shows in the shape too
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # as the phone's sensor wrote it
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif, quality=95)
    for pixels in (load_rgb(path, 10_000_000), decode_rgb(path.read_bytes(), "phone.jpg", 10_000_000)):
        assert pixels.shape == upright.shape
        assert np.abs(pixels.astype(int) - upright).mean() < 4
        (face,) = [f for f in engine.faces(pixels, embed=False) if f.box.top < 200]
        assert abs(face.quality.roll_deg) < 20, "the eyes level, as in the upright picture"
