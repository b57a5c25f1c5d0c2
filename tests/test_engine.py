import numpy as np

from openlfr.settings import Settings
from openlfr.vision.dlib_backend import DlibReferenceEmbedder
from openlfr.vision.onnx_embedder import DlibResnetEmbedder, resnet_onnx_path


def test_astronaut_has_one_frontal_face_with_sane_quality(engine, astronaut):
    faces = engine.faces(astronaut)
    # HOG also fires weakly on the mission patch on her suit; the face is the confident detection
    face = max(faces, key=lambda f: f.score)
    assert face.score > 0.8 and all(f.score < 0.5 for f in faces if f is not face)
    assert face.landmarks.shape == (5, 2)
    assert face.chip.shape == (150, 150, 3)
    assert 30 < face.quality.inter_eye_px < 80
    assert abs(face.quality.yaw_deg) < 15 and abs(face.quality.pitch_deg) < 15
    assert face.quality.sharpness > 20
    assert face.embedding is not None and face.embedding.shape == (128,)
    assert abs(float(np.linalg.norm(face.embedding)) - 1.0) < 1e-5
    assert face.model_id == "dlib_resnet_v1+flip"


def test_onnx_graph_equals_dlib_on_a_real_face(engine, astronaut):
    chip = max(engine.faces(astronaut, embed=False), key=lambda f: f.score).chip[None]
    ours = DlibResnetEmbedder(resnet_onnx_path(Settings().cache_dir)).raw(chip)
    theirs = DlibReferenceEmbedder().raw(chip)
    assert float(np.abs(ours - theirs).max()) <= 1e-4


def test_batched_embedding_equals_one_by_one(engine, astronaut):
    chip = max(engine.faces(astronaut, embed=False), key=lambda f: f.score).chip
    chips = np.stack([chip, chip[:, ::-1], np.roll(chip, 3, axis=0)])
    together = engine.embed_chips(chips)
    alone = np.concatenate([engine.embed_chips(c[None]) for c in chips])
    assert np.abs(together - alone).max() < 1e-5
    # the three chips are different inputs, so their embeddings must differ
    assert float(together[0] @ together[2]) < 0.9999


def test_blurred_face_scores_lower_sharpness(engine, astronaut):
    from PIL import Image, ImageFilter

    best = max(engine.detect(astronaut), key=lambda d: d.score)
    (sharp,) = engine.analyse(astronaut, [best])
    blurred_image = np.asarray(Image.fromarray(astronaut).filter(ImageFilter.GaussianBlur(3)))
    (blurred,) = engine.analyse(blurred_image, [best])
    assert blurred.quality.sharpness < sharp.quality.sharpness / 3


def test_stills_profile_adds_views_deterministically(astronaut):
    from openlfr.vision.engine import build_engine
    from openlfr.vision.tta import jitter_chips

    stills = build_engine(Settings(stills_jitter=4), stills=True)
    assert stills.options.second_alignment and stills.fallback is not None
    face = max(stills.faces(astronaut), key=lambda f: f.score)
    assert len(face.other_chips) == 1 and face.other_chips[0].shape == (150, 150, 3)
    again = max(stills.faces(astronaut), key=lambda f: f.score)
    assert np.array_equal(face.embedding, again.embedding)  # jitter is seeded by the chip itself
    live = build_engine(Settings())
    live_face = max(live.faces(astronaut), key=lambda f: f.score)
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
