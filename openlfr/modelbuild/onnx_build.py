"""Build an ONNX graph from a parsed dlib network, so the embedder runs on ONNX Runtime.

The graph takes what dlib's network takes: a batch of RGB face chips, ``uint8`` of shape (N, size, size, 3),
and does dlib's own input scaling, ``(pixel - mean) / 256``, inside the graph. Each affine layer (a frozen
batch norm) is folded into the convolution before it; dlib's residual additions zero-fill the smaller
operand, which we reproduce with explicit padding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from openlfr.errors import ModelError
from openlfr.modelbuild.dlib_format import (
    AddTagged,
    Affine,
    Conv,
    Dense,
    DlibNetwork,
    InputRGB,
    Pool,
    Relu,
    Skip,
    Tag,
)
from openlfr.modelbuild.onnx_model import checked_model

INPUT_NAME = "chips"
OUTPUT_NAME = "descriptor"

Shape = tuple[int, int, int]  # channels, rows, cols


def _out_size(size: int, kernel: int, stride: int, pad: int) -> int:
    return 1 + (size + 2 * pad - kernel) // stride


class _GraphWriter:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._counter = 0

    def name(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}_{self._counter}"

    def const(self, prefix: str, value: np.ndarray) -> str:
        name = self.name(prefix)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], **attrs: Any) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out


def _fold_affines(ops: list[object]) -> list[object]:
    """Fold every affine that directly follows a convolution into that convolution's weights and bias."""
    folded: list[object] = []
    for op in ops:
        previous = folded[-1] if folded else None
        if isinstance(op, Affine) and isinstance(previous, Conv):
            gamma = op.gamma.astype(np.float64)
            weights = previous.weights.astype(np.float64) * gamma[:, None, None, None]
            bias = previous.bias.astype(np.float64) if previous.bias is not None else 0.0
            new_bias = bias * gamma + op.beta.astype(np.float64)
            folded[-1] = Conv(
                weights=weights.astype(np.float32),
                bias=np.asarray(new_bias, dtype=np.float32),
                stride=previous.stride,
                padding=previous.padding,
            )
        else:
            folded.append(op)
    return folded


def _pad_to(writer: _GraphWriter, tensor: str, have: Shape, want: Shape) -> str:
    if have == want:
        return tensor
    pads = [0, 0, 0, 0, 0, want[0] - have[0], want[1] - have[1], want[2] - have[2]]
    return writer.node("Pad", [tensor, writer.const("pads", np.asarray(pads, dtype=np.int64))])


def network_to_onnx(network: DlibNetwork, model_id: str) -> onnx.ModelProto:
    ops = _fold_affines(list(network.ops))
    first = ops[0]
    if not isinstance(first, InputRGB):
        raise ModelError("dlib network does not start with an RGB input layer")
    writer = _GraphWriter()
    size = first.size

    pixels = writer.node("Cast", [INPUT_NAME], to=TensorProto.FLOAT)
    mean = writer.const("mean", np.asarray(first.mean_rgb, dtype=np.float32).reshape(1, 1, 1, 3))
    centred = writer.node("Sub", [pixels, mean])
    scaled = writer.node("Mul", [centred, writer.const("scale", np.asarray(1.0 / 256.0, dtype=np.float32))])
    current = writer.node("Transpose", [scaled], perm=[0, 3, 1, 2])
    shape: Shape = (3, size, size)
    tagged: dict[int, tuple[str, Shape]] = {}

    for op in ops[1:]:
        if isinstance(op, Conv):
            out_c, _, kh, kw = op.weights.shape
            inputs = [current, writer.const("w", op.weights)]
            if op.bias is not None:
                inputs.append(writer.const("b", op.bias.astype(np.float32)))
            py, px = op.padding
            current = writer.node("Conv", inputs, kernel_shape=[kh, kw], strides=list(op.stride), pads=[py, px, py, px])
            shape = (
                out_c,
                _out_size(shape[1], kh, op.stride[0], py),
                _out_size(shape[2], kw, op.stride[1], px),
            )
        elif isinstance(op, Affine):
            gamma = writer.const("gamma", op.gamma.reshape(1, -1, 1, 1))
            beta = writer.const("beta", op.beta.reshape(1, -1, 1, 1))
            current = writer.node("Add", [writer.node("Mul", [current, gamma]), beta])
        elif isinstance(op, Relu):
            current = writer.node("Relu", [current])
        elif isinstance(op, Pool):
            if op.size == (0, 0):
                if op.mode != "avg":
                    raise ModelError("global max pooling is not supported")
                current = writer.node("GlobalAveragePool", [current])
                shape = (shape[0], 1, 1)
            else:
                kh, kw = op.size
                py, px = op.padding
                onnx_op = "MaxPool" if op.mode == "max" else "AveragePool"
                current = writer.node(
                    onnx_op, [current], kernel_shape=[kh, kw], strides=list(op.stride), pads=[py, px, py, px]
                )
                shape = (
                    shape[0],
                    _out_size(shape[1], kh, op.stride[0], py),
                    _out_size(shape[2], kw, op.stride[1], px),
                )
        elif isinstance(op, Tag):
            tagged[op.tag] = (current, shape)
        elif isinstance(op, Skip):
            current, shape = tagged[op.tag]
        elif isinstance(op, AddTagged):
            other, other_shape = tagged[op.tag]
            both: Shape = (
                max(shape[0], other_shape[0]),
                max(shape[1], other_shape[1]),
                max(shape[2], other_shape[2]),
            )
            current = writer.node(
                "Add", [_pad_to(writer, current, shape, both), _pad_to(writer, other, other_shape, both)]
            )
            shape = both
        elif isinstance(op, Dense):
            flat = writer.node("Flatten", [current], axis=1)
            current = writer.node("MatMul", [flat, writer.const("fc", op.weights)])
            if op.bias is not None:
                current = writer.node("Add", [current, writer.const("fc_b", op.bias)])
            shape = (op.weights.shape[1], 1, 1)
        else:
            raise ModelError(f"unsupported dlib operation {op!r}")

    writer.nodes.append(helper.make_node("Identity", [current], [OUTPUT_NAME]))
    graph = helper.make_graph(
        writer.nodes,
        "dlib_resnet",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["batch", size, size, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", shape[0]])],
        writer.initializers,
    )
    return checked_model(graph, model_id)
