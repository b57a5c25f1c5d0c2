"""Dequantise SFace's block-quantised ONNX graph into a plain float graph that ONNX Runtime runs.

``DequantizeLinear`` with ``block_size`` (opset 21) defines ``y = (x - zero_point) * scale``, where the scale
and zero point of element ``i`` along ``axis`` are those of block ``i // block_size``. Each such node, with the
``Reshape`` of its output to the weight's shape, becomes one float initializer computed here; nothing else in
the graph changes. The graph's float weights also appear as graph inputs that nothing feeds (left over from
the quantiser): inputs other than the image are dropped, so every weight is a constant again.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from openlfr.errors import ModelError

# Bumped when the conversion changes what it writes: the cached graph's name carries it.
CONVERTER_VERSION = 1
IMAGE_INPUT = "data"
# The float graph needs no block-quantised operator: opset 17 is what every ONNX Runtime build runs.
OUTPUT_OPSET = 17
OUTPUT_IR_VERSION = 8


def dequantise_blocks(
    quantised: np.ndarray, scales: np.ndarray, zero_points: np.ndarray, axis: int, block_size: int
) -> np.ndarray:
    """``DequantizeLinear``'s blocked form, in float64 then rounded once to float32."""
    if quantised.ndim != scales.ndim or scales.shape != zero_points.shape:
        raise ModelError("SFace model: a quantised weight's scales and zero points do not match its shape")
    index = np.arange(quantised.shape[axis]) // block_size
    if index[-1] >= scales.shape[axis]:
        raise ModelError("SFace model: a quantised weight has fewer scale blocks than its length needs")
    scale = np.take(scales.astype(np.float64), index, axis=axis)
    zero = np.take(zero_points.astype(np.float64), index, axis=axis)
    return ((quantised.astype(np.float64) - zero) * scale).astype(np.float32)


def dequantised_model(model: onnx.ModelProto, model_id: str) -> onnx.ModelProto:
    """The same network with float weights: no ``DequantizeLinear``, no weight inputs, opset 17."""
    graph = model.graph
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    produced: dict[str, np.ndarray] = {}
    kept: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type == "DequantizeLinear":
            attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            quantised, scales, zeros = (constants[name] for name in node.input)
            produced[node.output[0]] = dequantise_blocks(
                quantised, scales, zeros, int(attributes.get("axis", 1)), int(attributes.get("block_size", 0))
            )
        elif node.op_type == "Reshape" and node.input[0] in produced:
            produced[node.output[0]] = produced.pop(node.input[0]).reshape(constants[node.input[1]])
        else:
            kept.append(node)
    used = {name for node in kept for name in node.input}
    if any(name not in used for name in produced):
        raise ModelError("SFace model: a dequantised weight feeds nothing; this is not the graph we convert")
    initializers = [tensor for tensor in graph.initializer if tensor.name in used]
    initializers += [numpy_helper.from_array(value, name) for name, value in sorted(produced.items())]
    (image,) = [i for i in graph.input if i.name == IMAGE_INPUT]
    converted = helper.make_graph(kept, "sface", [image], list(graph.output), initializers)
    result = helper.make_model(
        converted, opset_imports=[helper.make_opsetid("", OUTPUT_OPSET)], producer_name="openlfr"
    )
    result.ir_version = OUTPUT_IR_VERSION
    result.doc_string = model_id
    onnx.checker.check_model(result)
    return result
