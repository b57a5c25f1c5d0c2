"""Embedders on ONNX Runtime: dlib's ResNet (converted by us) and user-supplied ArcFace-style models."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from openlfr.errors import ModelError
from openlfr.text import first_line
from openlfr.vision.model_files import file_sha256
from openlfr.vision.providers import ExecutionProviderUnavailable, session_providers
from openlfr.vision.types import unit_rows

log = logging.getLogger(__name__)

DLIB_RESNET_ID = "dlib_resnet_v1"


def _session(model: bytes | str, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    # Idle pool threads sleep instead of spinning: a camera runs detection and analysis in two processes on
    # the same cores, and spinning threads take the CPU from the other process (benchmarks/mobilefacenet.py).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = session_providers()  # the settings' execution provider (vision/providers.py)
    try:
        session = ort.InferenceSession(model, sess_options=options, providers=list(providers))
    except Exception as exc:  # ONNX Runtime raises its own exception types for every kind of bad file
        raise ModelError(f"ONNX Runtime cannot load the model: {first_line(exc)}") from exc
    if session.get_providers()[0] != providers[0]:
        # ONNX Runtime falls back to the CPU, with a warning only, when an accelerator's libraries fail to load
        raise ExecutionProviderUnavailable(
            f"ONNX Runtime could not start {providers[0]} (OPENLFR_EXECUTION_PROVIDER): its libraries (CUDA, cuDNN, "
            f"TensorRT or OpenVINO) did not load; the session fell back to {', '.join(session.get_providers())}"
        )
    return session


def arcface_model_id(path: Path) -> str:
    """A user-supplied model is named by its file name and content, so a changed file is a different model."""
    return f"onnx:{path.stem}:{file_sha256(path)[:12]}"


class DlibResnetEmbedder:
    """dlib's 128-D face ResNet, as an ONNX graph built from the installed weights."""

    chip_size = 150
    dimension = 128

    def __init__(self, onnx_path: Path, threads: int = 0) -> None:
        self.model_id = DLIB_RESNET_ID
        self._session = _session(str(onnx_path), threads)
        self._input = self._session.get_inputs()[0].name

    def raw(self, chips: np.ndarray) -> np.ndarray:
        """The network's own output, not normalised: what dlib's ``compute_face_descriptor`` returns."""
        if len(chips) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        result = self._session.run(None, {self._input: np.ascontiguousarray(chips, dtype=np.uint8)})
        return np.asarray(result[0], dtype=np.float32)

    def embed(self, chips: np.ndarray) -> np.ndarray:
        return unit_rows(self.raw(chips))


class ArcFaceEmbedder:
    """A user-supplied ArcFace-style ONNX model (e.g. 112x112 input, 512-D output).

    The layout and sizes are read from the model's declared input and output shapes: NCHW or NHWC, a square
    chip, any embedding width. Pixels are scaled to [-1, 1] as ArcFace models expect. A model exported with a
    fixed batch size (often 1 or 2) is run in chunks of that size, the last one padded.
    """

    def __init__(self, path: Path, threads: int = 0) -> None:
        if not path.is_file():
            raise ModelError(f"{path}: no such model file")
        self._session = _session(str(path), threads)
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ModelError(f"{path}: expected one image input and an embedding output")
        shape = list(inputs[0].shape)
        if len(shape) != 4:
            raise ModelError(f"{path}: input must be a 4-D image batch, found shape {shape}")
        if shape[1] == 3 and isinstance(shape[2], int) and shape[2] == shape[3]:
            self.channels_first, self.chip_size = True, int(shape[2])
        elif shape[3] == 3 and isinstance(shape[1], int) and shape[1] == shape[2]:
            self.channels_first, self.chip_size = False, int(shape[1])
        else:
            raise ModelError(f"{path}: input shape {shape} is not a square RGB image batch")
        out_shape = list(outputs[0].shape)
        if len(out_shape) != 2 or not isinstance(out_shape[1], int):
            raise ModelError(f"{path}: output shape {out_shape} is not (batch, dimension)")
        self.dimension = int(out_shape[1])
        # a named or missing dimension is dynamic; a number is the only batch size the model accepts
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self._input = inputs[0].name
        self._float16 = "float16" in inputs[0].type
        self.model_id = arcface_model_id(path)

    def embed(self, chips: np.ndarray) -> np.ndarray:
        if len(chips) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        batch = (chips.astype(np.float32) - 127.5) / 127.5
        if self.channels_first:
            batch = batch.transpose(0, 3, 1, 2)
        batch = np.ascontiguousarray(batch, dtype=np.float16 if self._float16 else np.float32)
        if self.fixed_batch is None:
            return unit_rows(np.asarray(self._session.run(None, {self._input: batch})[0], dtype=np.float32))
        size = self.fixed_batch
        padded = np.concatenate([batch, np.zeros((-len(batch) % size, *batch.shape[1:]), batch.dtype)])
        outputs = [self._session.run(None, {self._input: padded[i : i + size]})[0] for i in range(0, len(padded), size)]
        return unit_rows(np.concatenate(outputs)[: len(batch)].astype(np.float32))


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation taking ``source`` points onto ``target``.

    Returns a 2x3 matrix (Umeyama's method).
    """
    src_mean, dst_mean = source.mean(axis=0), target.mean(axis=0)
    src, dst = source - src_mean, target - dst_mean
    covariance = dst.T @ src / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rotation = u @ np.diag(sign) @ vt
    scale = (singular * sign).sum() / src.var(axis=0).sum()
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix
