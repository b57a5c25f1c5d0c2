"""The generic ONNX embedder, on tiny ArcFace-shaped models this test builds itself."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from openlfr.errors import ModelError
from openlfr.settings import Settings
from openlfr.vision.align import ARCFACE_TEMPLATE_112
from openlfr.vision.engine import FaceEngine, arcface_aligner
from openlfr.vision.onnx_embedder import ArcFaceEmbedder


def tiny_model(path, layout="nchw", size=112, dim=512, batch="n"):
    rng = np.random.default_rng(0)
    shape = [batch, 3, size, size] if layout == "nchw" else [batch, size, size, 3]
    nodes = []
    source = "image"
    if layout == "nhwc":
        nodes.append(helper.make_node("Transpose", ["image"], ["chw"], perm=[0, 3, 1, 2]))
        source = "chw"
    # 8x8 average pooling then a fixed random projection: a deterministic, input-dependent embedding
    nodes += [
        helper.make_node("AveragePool", [source], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "proj"], ["embedding"]),
    ]
    cells = 3 * (size // 8) ** 2
    projection = numpy_helper.from_array(rng.standard_normal((cells, dim)).astype(np.float32), "proj")
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, dim])],
        [projection],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_shapes_are_read_from_the_file(tmp_path, layout):
    embedder = ArcFaceEmbedder(tiny_model(tmp_path / "m.onnx", layout=layout))
    assert (embedder.chip_size, embedder.dimension) == (112, 512)
    assert embedder.channels_first == (layout == "nchw")
    chips = np.random.default_rng(1).integers(0, 255, (3, 112, 112, 3), dtype=np.uint8)
    vectors = embedder.embed(chips)
    assert vectors.shape == (3, 512)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])


@pytest.mark.parametrize("batch", [1, 2])
def test_a_model_with_a_fixed_batch_size_runs_in_chunks(tmp_path, batch):
    dynamic = ArcFaceEmbedder(tiny_model(tmp_path / "dynamic.onnx"))
    fixed = ArcFaceEmbedder(tiny_model(tmp_path / f"fixed{batch}.onnx", batch=batch))
    assert dynamic.fixed_batch is None and fixed.fixed_batch == batch
    chips = np.random.default_rng(2).integers(0, 255, (5, 112, 112, 3), dtype=np.uint8)
    # 5 chips: several full chunks and (batch 2) a padded last one, the padding dropped from the result
    for count in (1, 2, 5):
        vectors = fixed.embed(chips[:count])
        assert vectors.shape == (count, 512)
        assert np.abs(vectors - dynamic.embed(chips[:count])).max() < 1e-5


def test_engine_aligns_to_the_arcface_template(tmp_path, engine, astronaut):
    embedder = ArcFaceEmbedder(tiny_model(tmp_path / "m.onnx"))
    aligner = arcface_aligner(engine.detector, Settings(), embedder.chip_size)
    arc_engine = FaceEngine(engine.detector, aligner, embedder)
    face = max(arc_engine.faces(astronaut), key=lambda f: f.score)
    assert face.chip.shape == (112, 112, 3)
    assert face.embedding is not None and face.embedding.shape == (512,)
    assert face.model_id is not None and face.model_id.startswith("onnx:m:")
    # The eyes land where ArcFace's template puts them: the chip's eye rows are darker than the cheeks.
    eye_row = int(ARCFACE_TEMPLATE_112[0, 1])
    assert face.chip[eye_row - 3 : eye_row + 3].mean() < face.chip[eye_row + 25 : eye_row + 31].mean()


def test_bad_model_files_are_clear_errors(tmp_path):
    with pytest.raises(ModelError, match="no such model"):
        ArcFaceEmbedder(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load"):
        ArcFaceEmbedder(junk)
    with pytest.raises(ModelError, match="not a square RGB"):
        ArcFaceEmbedder(_odd(tmp_path))


def _odd(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["y"], axis=1)],
        "odd",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 5, 7, 9])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 315])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "odd.onnx"
    onnx.save(model, path)
    return path
