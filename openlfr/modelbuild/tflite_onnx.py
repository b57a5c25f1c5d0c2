"""Our own TFLite -> ONNX converter for the float CNNs we ship (today: MobileFaceNet).

The flatbuffer is read into a plain graph by :mod:`openlfr.modelbuild.tflite_graph`, which refuses any operator
outside ``SUPPORTED`` rather than write a wrong graph; here that graph is rewritten and rebuilt with
``onnx.helper`` in NCHW with a dynamic batch dimension.

Three rewrites make the graph clean and fast on ONNX Runtime:
- TOCO wrote each PReLU as ``relu(x) + c * (x - |x|)``, five operators; that is ``PRelu(x, 2c)`` exactly
  (``x - |x| = 2 min(x, 0)``, and doubling is exact in floating point), so each becomes one ``PRelu``.
- Batch norms arrive already folded into the convolutions' biases; a standalone per-channel scale or shift
  after a convolution (constant ``MUL``/``ADD``) is folded into it too, so no normalisation node remains.
- Two 1x1 convolutions in a row with nothing between them and the first result used nowhere else are one
  linear map: they are merged into a single 1x1 convolution.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from openlfr.errors import ModelError
from openlfr.modelbuild.onnx_model import checked_model
from openlfr.modelbuild.tflite_graph import Graph, Op, Tensor, read_tflite

INPUT_NAME = "input"
OUTPUT_NAME = "embeddings"
# Part of the cached graph's name: a change to what the converter writes must not reuse an old conversion.
CONVERTER_VERSION = 1


# ----- rewrites on the TFLite graph -----


def fuse_prelu(graph: Graph) -> int:
    """``relu(x) + c * (x - abs(x))`` -> ``PRELU(x, slope=2c)``. Returns how many were fused."""
    fused = 0
    for add in [op for op in graph.ops if op.kind == "ADD"]:
        match = _prelu_match(graph, add)
        if match is None:
            continue
        source, slope, removed = match
        index = graph.ops.index(add)
        graph.ops[index] = Op("PRELU", [source], add.outputs, {"slope": slope})
        graph.ops = [op for op in graph.ops if all(op is not gone for gone in removed)]
        fused += 1
    return fused


def _prelu_match(graph: Graph, add: Op) -> tuple[int, np.ndarray, list[Op]] | None:
    producers = [graph.producer(t) for t in add.inputs]
    relu = next((p for p in producers if p is not None and p.kind == "RELU"), None)
    mul = next((p for p in producers if p is not None and p.kind == "MUL"), None)
    if relu is None or mul is None:
        return None
    source = relu.inputs[0]
    constants = [graph.constant(t) for t in mul.inputs]
    variable = [t for t, c in zip(mul.inputs, constants, strict=True) if c is None]
    scale = next((c for c in constants if c is not None), None)
    if scale is None or len(variable) != 1:
        return None
    sub = graph.producer(variable[0])
    if sub is None or sub.kind != "SUB" or sub.inputs[0] != source:
        return None
    absolute = graph.producer(sub.inputs[1])
    if absolute is None or absolute.kind != "ABS" or absolute.inputs[0] != source:
        return None
    inner = [relu, mul, sub, absolute]
    # every intermediate result must feed only this pattern, or removing it would break another user
    if any(len(graph.consumers(op.outputs[0])) != 1 for op in inner):
        return None
    channels = graph.tensors[source].shape[-1]
    slope = np.broadcast_to(2.0 * scale.astype(np.float32).reshape(-1), (channels,)).astype(np.float32)
    return source, slope, inner


def fold_channel_affines(graph: Graph) -> int:
    """A constant per-channel ``MUL``/``ADD`` right after a convolution goes into its weights and bias."""
    folded = 0
    for op in list(graph.ops):
        if op.kind not in ("MUL", "ADD") or len(op.inputs) != 2:
            continue
        constants = [graph.constant(t) for t in op.inputs]
        if sum(c is not None for c in constants) != 1:
            continue
        variable = next(t for t, c in zip(op.inputs, constants, strict=True) if c is None)
        value = next(c for c in constants if c is not None).astype(np.float64)
        conv = graph.producer(variable)
        if conv is None or conv.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D") or len(graph.consumers(variable)) != 1:
            continue
        channels = graph.tensors[variable].shape[-1]
        if value.size not in (1, channels):
            continue
        value = np.broadcast_to(value.reshape(-1), (channels,))
        weights = graph.constant(conv.inputs[1])
        bias = _conv_bias(graph, conv)
        if weights is None:
            continue
        if op.kind == "MUL":
            # TFLite weights keep output channels last for depthwise ([1, kh, kw, C]) and first for conv
            axis = 3 if conv.kind == "DEPTHWISE_CONV_2D" else 0
            shape = [1, 1, 1, 1]
            shape[axis] = channels
            new_weights = (weights.astype(np.float64) * value.reshape(shape)).astype(np.float32)
            new_bias = (bias * value).astype(np.float32)
        else:
            new_weights, new_bias = weights, (bias + value).astype(np.float32)
        conv.inputs = [conv.inputs[0], _add_constant(graph, new_weights), _add_constant(graph, new_bias)]
        conv.outputs = op.outputs
        graph.ops.remove(op)
        folded += 1
    return folded


def merge_pointwise_pairs(graph: Graph) -> int:
    """Two 1x1 stride-1 convolutions in a row (the first's result used only by the second) become one."""
    merged = 0
    changed = True
    while changed:
        changed = False
        for first in graph.ops:
            if not _is_pointwise(graph, first) or len(graph.consumers(first.outputs[0])) != 1:
                continue
            (second,) = graph.consumers(first.outputs[0])
            if not _is_pointwise(graph, second) or second.inputs[0] != first.outputs[0]:
                continue
            w1 = graph.constant(first.inputs[1])
            w2 = graph.constant(second.inputs[1])
            assert w1 is not None and w2 is not None
            a = w1.reshape(w1.shape[0], -1).astype(np.float64)  # [mid, in]
            b = w2.reshape(w2.shape[0], -1).astype(np.float64)  # [out, mid]
            weights = (b @ a).reshape(b.shape[0], 1, 1, a.shape[1]).astype(np.float32)
            bias = (b @ _conv_bias(graph, first) + _conv_bias(graph, second)).astype(np.float32)
            second.inputs = [first.inputs[0], _add_constant(graph, weights), _add_constant(graph, bias)]
            graph.ops.remove(first)
            merged += 1
            changed = True
            break
    return merged


def _is_pointwise(graph: Graph, op: Op) -> bool:
    if op.kind != "CONV_2D" or op.options.get("stride") != (1, 1):
        return False
    weights = graph.constant(op.inputs[1])
    return weights is not None and weights.shape[1:3] == (1, 1)


def _conv_bias(graph: Graph, conv: Op) -> np.ndarray:
    bias = graph.constant(conv.inputs[2]) if len(conv.inputs) > 2 else None
    channels = graph.tensors[conv.outputs[0]].shape[-1]
    return np.zeros(channels) if bias is None else bias.astype(np.float64)


def _add_constant(graph: Graph, value: np.ndarray) -> int:
    graph.tensors.append(Tensor(f"folded_{len(graph.tensors)}", list(value.shape), value))
    return len(graph.tensors) - 1


# ----- writing ONNX -----


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding: the odd pixel goes at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _Writer:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.names: dict[int, str] = {}

    def tensor(self, index: int) -> str:
        """The ONNX name of a TFLite tensor; constants become initializers in NCHW broadcast form."""
        if index in self.names:
            return self.names[index]
        tensor = self.graph.tensors[index]
        if tensor.data is None:
            raise ModelError(f"tensor {tensor.name} is used before it is computed")
        value = tensor.data.astype(np.float32)
        if value.ndim == 1 and value.size > 1:
            value = value.reshape(-1, 1, 1)  # a per-channel constant against NCHW activations
        self.initializers.append(numpy_helper.from_array(value, tensor.name))
        self.names[index] = tensor.name
        return tensor.name

    def constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def output(self, op: Op) -> str:
        index = op.outputs[0]
        name = OUTPUT_NAME if index in self.graph.outputs else self.graph.tensors[index].name
        self.names[index] = name
        return name

    def convolution(self, op: Op) -> None:
        source = op.inputs[0]
        weights = self.graph.constant(op.inputs[1])
        if weights is None:
            raise ModelError(f"{op.kind} with computed weights is not supported")
        _, rows, cols, in_channels = self.graph.tensors[source].shape
        if op.kind == "CONV_2D":
            kernel = weights.transpose(0, 3, 1, 2)  # [O, kh, kw, I] -> [O, I, kh, kw]
            group = 1
            if kernel.shape[1] != in_channels:
                raise ModelError(f"grouped CONV_2D ({in_channels} channels in) is not supported")
        else:
            # [1, kh, kw, C * multiplier] -> [C * multiplier, 1, kh, kw], one group per input channel
            kernel = weights[0].transpose(2, 0, 1)[:, None]
            group = in_channels
            if kernel.shape[0] != in_channels * op.options["multiplier"]:
                raise ModelError(f"DEPTHWISE_CONV_2D weights {weights.shape} do not match {in_channels} channels")
        kh, kw = kernel.shape[2:]
        sh, sw = op.options["stride"]
        if op.options["padding"] == "SAME":
            (top, bottom), (left, right) = _same_pads(rows, kh, sh), _same_pads(cols, kw, sw)
        else:
            top = bottom = left = right = 0
        inputs = [self.tensor(source), self.constant(f"{self.graph.tensors[op.inputs[1]].name}/oihw", kernel)]
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            inputs.append(self.tensor_flat(op.inputs[2]))
        self.nodes.append(
            helper.make_node(
                "Conv",
                inputs,
                [self.output(op)],
                kernel_shape=[int(kh), int(kw)],
                strides=[int(sh), int(sw)],
                pads=[top, left, bottom, right],
                group=group,
            )
        )

    def tensor_flat(self, index: int) -> str:
        """A 1-D constant kept 1-D (a convolution's bias)."""
        tensor = self.graph.tensors[index]
        assert tensor.data is not None
        name = f"{tensor.name}/bias"
        return self.constant(name, tensor.data.astype(np.float32).reshape(-1))

    def elementwise(self, op: Op) -> None:
        onnx_op = {"ADD": "Add", "SUB": "Sub", "MUL": "Mul"}[op.kind]
        for index in op.inputs:
            shape = self.graph.tensors[index].shape
            if self.graph.tensors[index].data is None and len(shape) != 4:
                raise ModelError(f"{op.kind} on a {len(shape)}-D tensor is not supported")
        inputs = [self.tensor(i) for i in op.inputs]
        self.nodes.append(helper.make_node(onnx_op, inputs, [self.output(op)]))

    def reshape(self, op: Op) -> None:
        before = self.graph.tensors[op.inputs[0]].shape
        after = self.graph.tensors[op.outputs[0]].shape
        # NHWC [N, 1, 1, C] -> [N, C] is the same in NCHW: drop the unit spatial dimensions
        if len(before) != 4 or before[1:3] != [1, 1] or after[1:] != [before[3]]:
            raise ModelError(f"RESHAPE {before} -> {after} is not supported (only [N, 1, 1, C] -> [N, C])")
        self.nodes.append(helper.make_node("Flatten", [self.tensor(op.inputs[0])], [self.output(op)], axis=1))


def graph_to_onnx(graph: Graph, model_id: str) -> onnx.ModelProto:
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ModelError("expected one input and one output")
    (input_index,) = graph.inputs
    shape = graph.tensors[input_index].shape
    if len(shape) != 4:
        raise ModelError(f"expected an NHWC image input, found shape {shape}")
    _, rows, cols, channels = shape
    writer = _Writer(graph)
    writer.names[input_index] = INPUT_NAME
    for op in graph.ops:
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            writer.convolution(op)
        elif op.kind == "PRELU":
            name = f"{graph.tensors[op.outputs[0]].name}/slope"
            slope = writer.constant(name, op.options["slope"].reshape(-1, 1, 1))
            writer.nodes.append(helper.make_node("PRelu", [writer.tensor(op.inputs[0]), slope], [writer.output(op)]))
        elif op.kind in ("ADD", "SUB", "MUL"):
            writer.elementwise(op)
        elif op.kind == "ABS":
            writer.nodes.append(helper.make_node("Abs", [writer.tensor(op.inputs[0])], [writer.output(op)]))
        elif op.kind == "RELU":
            writer.nodes.append(helper.make_node("Relu", [writer.tensor(op.inputs[0])], [writer.output(op)]))
        elif op.kind == "RESHAPE":
            writer.reshape(op)
        else:  # pragma: no cover - read_tflite refuses anything else
            raise ModelError(f"unsupported operator {op.kind}")
    out_shape = graph.tensors[graph.outputs[0]].shape
    onnx_graph = helper.make_graph(
        writer.nodes,
        model_id.split(":")[0],
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", channels, rows, cols])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", *out_shape[1:]])],
        writer.initializers,
    )
    return checked_model(onnx_graph, model_id)


def tflite_to_onnx(content: bytes, model_id: str) -> onnx.ModelProto:
    """The clean NCHW ONNX graph of a float TFLite CNN (input ``input`` [batch, C, H, W])."""
    graph = read_tflite(content)
    fuse_prelu(graph)
    fold_channel_affines(graph)
    merge_pointwise_pairs(graph)
    return graph_to_onnx(graph, model_id)
