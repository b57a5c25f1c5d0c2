"""What every ONNX graph we build shares: the opset it is written in, and a model onnx's checker accepts."""

from __future__ import annotations

import onnx
from onnx import helper

OPSET = 17
IR_VERSION = 8


def checked_model(graph: onnx.GraphProto, model_id: str) -> onnx.ModelProto:
    """The model of this graph, stamped with the embedding model's id; the checker refuses a malformed graph."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="openlfr")
    model.ir_version = IR_VERSION
    model.doc_string = model_id
    onnx.checker.check_model(model)
    return model
