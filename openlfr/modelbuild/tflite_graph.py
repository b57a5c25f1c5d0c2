"""A float TFLite model's graph as plain data: its tensors (constants as numpy arrays) and operators.

The flatbuffer is read with the schema bindings of the ``tflite`` package. Only the operators the CNNs we ship
use are accepted (``SUPPORTED``); anything else is a clear error here, before any conversion starts. The
rewrites and the ONNX writer that consume this graph are :mod:`openlfr.modelbuild.tflite_onnx`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tflite

from openlfr.errors import ModelError

SUPPORTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "SUB", "MUL", "ABS", "RELU", "RESHAPE")


@dataclass
class Tensor:
    name: str
    shape: list[int]  # as TFLite has it: activations NHWC, batch first
    data: np.ndarray | None  # constants only (float32)


@dataclass
class Op:
    kind: str  # a TFLite builtin name ("CONV_2D") or one of ours ("PRELU")
    inputs: list[int]  # tensor indices; -1 for an absent optional input
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]

    def consumers(self, tensor: int) -> list[Op]:
        return [op for op in self.ops if tensor in op.inputs]

    def producer(self, tensor: int) -> Op | None:
        return next((op for op in self.ops if tensor in op.outputs), None)

    def constant(self, tensor: int) -> np.ndarray | None:
        return self.tensors[tensor].data if tensor >= 0 else None


def _builtin_names() -> dict[int, str]:
    return {value: name for name, value in vars(tflite.BuiltinOperator).items() if not name.startswith("_")}


def _options(kind: str, op: Any) -> dict[str, Any]:
    table = op.BuiltinOptions()
    classes = {
        "CONV_2D": tflite.Conv2DOptions,
        "DEPTHWISE_CONV_2D": tflite.DepthwiseConv2DOptions,
        "ADD": tflite.AddOptions,
        "SUB": tflite.SubOptions,
        "MUL": tflite.MulOptions,
    }
    if kind not in classes or table is None:
        return {}
    options = classes[kind]()
    options.Init(table.Bytes, table.Pos)
    found: dict[str, Any] = {"activation": options.FusedActivationFunction()}
    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        found.update(
            padding="SAME" if options.Padding() == tflite.Padding.SAME else "VALID",
            stride=(options.StrideH(), options.StrideW()),
            dilation=(options.DilationHFactor(), options.DilationWFactor()),
        )
    if kind == "DEPTHWISE_CONV_2D":
        found["multiplier"] = options.DepthMultiplier()
    return found


def read_tflite(content: bytes) -> Graph:
    """The first subgraph of a float TFLite model, with its constants as numpy arrays."""
    if content[4:8] != b"TFL3":  # the flatbuffer's file identifier
        raise ModelError("not a TFLite model (its file identifier is not TFL3)")
    try:
        model = tflite.Model.GetRootAsModel(content, 0)
        if model.SubgraphsLength() != 1:
            raise ModelError(f"expected a TFLite model with one subgraph, found {model.SubgraphsLength()}")
        subgraph = model.Subgraphs(0)
        names = _builtin_names()
        float32 = tflite.TensorType.FLOAT32
        tensors = []
        for index in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(index)
            name = tensor.Name().decode()
            shape = tensor.ShapeAsNumpy().tolist() if tensor.ShapeLength() else []
            quantization = tensor.Quantization()
            if quantization is not None and quantization.ScaleLength():
                raise ModelError(f"tensor {name} is quantized; only float models are supported")
            buffer = model.Buffers(tensor.Buffer())
            raw = _buffer_bytes(content, buffer)
            data = None
            if raw:
                if tensor.Type() == float32:
                    data = np.frombuffer(raw, dtype="<f4").reshape(shape).copy()
                elif tensor.Type() == tflite.TensorType.INT32:
                    data = np.frombuffer(raw, dtype="<i4").reshape(shape).copy()
                else:
                    raise ModelError(f"constant {name} has an unsupported type ({tensor.Type()})")
            elif tensor.Type() != float32:
                raise ModelError(f"tensor {name} is not float32; only float models are supported")
            tensors.append(Tensor(name, shape, data))
        ops = []
        for index in range(subgraph.OperatorsLength()):
            op = subgraph.Operators(index)
            code = model.OperatorCodes(op.OpcodeIndex())
            kind = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
            if kind not in SUPPORTED:
                raise ModelError(
                    f"TFLite operator {kind} (operator {index}) is not supported by this converter "
                    f"(it handles {', '.join(SUPPORTED)})"
                )
            ops.append(Op(kind, op.InputsAsNumpy().tolist(), op.OutputsAsNumpy().tolist(), _options(kind, op)))
        graph = Graph(tensors, ops, subgraph.InputsAsNumpy().tolist(), subgraph.OutputsAsNumpy().tolist())
    except ModelError:
        raise
    except Exception as exc:  # the flatbuffer bindings raise anything on a damaged file
        raise ModelError(f"not a readable TFLite model ({type(exc).__name__}: {exc})") from exc
    for op in graph.ops:
        if op.options.get("activation", 0) != 0:
            raise ModelError(f"{op.kind} with a fused activation is not supported by this converter")
        if op.options.get("dilation", (1, 1)) != (1, 1):
            raise ModelError(f"dilated {op.kind} is not supported by this converter")
    return graph


def _buffer_bytes(content: bytes, buffer: Any) -> bytes:
    """A buffer's bytes: inline, or (large models) at an offset into the file."""
    offset = buffer.Offset() if hasattr(buffer, "Offset") else 0
    if offset > 1:
        return content[offset : offset + buffer.Size()]
    length = buffer.DataLength()
    return buffer.DataAsNumpy().tobytes() if length else b""
