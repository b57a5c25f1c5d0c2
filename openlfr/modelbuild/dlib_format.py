"""Reader for dlib's serialization format, enough to load ``dlib_face_recognition_resnet_model_v1.dat``.

dlib writes a network from the loss layer inwards: each ``add_layer`` writes its version, then its whole
sub-network, then its own layer details and cached tensors. We therefore walk the network's type, outermost
first (as dlib's ``anet_type`` declares it), descend to the input layer, and read each layer's details on the
way back out. The result is a list of operations in forward (input to output) order.

Format notes (dlib/serialize.h, dlib/cuda/tensor.h):
- integers: one control byte (low 4 bits = byte count, 0x80 = negative), then little-endian bytes;
- floats: a mantissa (int64) and exponent (int16), each as an integer above;
- strings: length (integer) then bytes; bools: ASCII '0' / '1';
- tensors: version 2, four dimensions, then raw little-endian float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from openlfr.errors import ModelError

_FLOAT_INF = 32000
_FLOAT_NINF = 32001
_FLOAT_NAN = 32002


class DlibStream:
    """A cursor over the bytes of a dlib-serialized file."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ModelError("dlib model file ends early: it is truncated or not a dlib network")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def read_int(self) -> int:
        control = self._take(1)[0]
        size = control & 0x0F
        if size == 0 or size > 8:
            raise ModelError(f"malformed integer in dlib model file at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def read_float(self) -> float:
        mantissa = self.read_int()
        exponent = self.read_int()
        if exponent == _FLOAT_INF:
            return math.inf
        if exponent == _FLOAT_NINF:
            return -math.inf
        if exponent == _FLOAT_NAN:
            return math.nan
        return math.ldexp(mantissa, exponent)

    def read_string(self) -> str:
        length = self.read_int()
        return self._take(length).decode("latin-1")

    def read_bool(self) -> bool:
        ch = self._take(1)
        if ch not in (b"0", b"1"):
            raise ModelError(f"malformed bool in dlib model file at byte {self.pos - 1}")
        return ch == b"1"

    def read_tensor(self) -> np.ndarray:
        version = self.read_int()
        if version != 2:
            raise ModelError(f"unexpected tensor version {version} in dlib model file")
        shape = tuple(self.read_int() for _ in range(4))
        count = int(np.prod(shape))
        raw = self._take(4 * count)
        return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)

    def read_alias_tensor(self) -> tuple[int, int, int, int]:
        if self.read_int() != 1:
            raise ModelError("unexpected alias_tensor version in dlib model file")
        n, k, r, c = (self.read_int() for _ in range(4))
        return (n, k, r, c)

    def expect_string(self, *allowed: str) -> str:
        found = self.read_string()
        if found not in allowed:
            raise ModelError(f"expected one of {allowed} in dlib model file, found {found!r}")
        return found


# ----- the operations a network is made of, in forward order -----


@dataclass
class InputRGB:
    size: int
    mean_rgb: tuple[float, float, float]
    kind: Literal["input"] = "input"


@dataclass
class Conv:
    weights: np.ndarray  # (out, in, kh, kw)
    bias: np.ndarray | None
    stride: tuple[int, int]
    padding: tuple[int, int]
    kind: Literal["conv"] = "conv"


@dataclass
class Affine:
    gamma: np.ndarray  # (channels,)
    beta: np.ndarray
    kind: Literal["affine"] = "affine"


@dataclass
class Relu:
    kind: Literal["relu"] = "relu"


@dataclass
class Pool:
    mode: Literal["max", "avg"]
    size: tuple[int, int]  # (0, 0) = the whole plane
    stride: tuple[int, int]
    padding: tuple[int, int]
    kind: Literal["pool"] = "pool"


@dataclass
class Dense:
    weights: np.ndarray  # (inputs, outputs): dlib computes x @ W
    bias: np.ndarray | None
    kind: Literal["dense"] = "dense"


@dataclass
class Tag:
    """Remember the current tensor under this tag id."""

    tag: int
    kind: Literal["tag"] = "tag"


@dataclass
class Skip:
    """Make the tensor remembered under this tag the current one."""

    tag: int
    kind: Literal["skip"] = "skip"


@dataclass
class AddTagged:
    """Add the tensor remembered under this tag, zero-filling whichever is smaller (dlib's add_prev)."""

    tag: int
    kind: Literal["add"] = "add"


Op = InputRGB | Conv | Affine | Relu | Pool | Dense | Tag | Skip | AddTagged


@dataclass
class DlibNetwork:
    ops: list[Op] = field(default_factory=list)
    loss: str = ""


# ----- the network type, outermost first, as dlib declares anet_type -----
# Each entry: ("layer", kind, tag) | ("tag", n) | ("skip", n). Layer kinds name what the details hold.

Wrapper = tuple[str, str, int]


def _layers(*kinds: str) -> list[Wrapper]:
    """Plain layers, outermost first: only an ``add_prev`` layer carries a tag."""
    return [("layer", kind, 0) for kind in kinds]


def _block() -> list[Wrapper]:
    # block<N,affine,stride,SUBNET> = affine<con<N,3,3,1,1,relu<affine<con<N,3,3,s,s,SUBNET>>>>>
    # (the stride is read from the file, so one shape serves both strides)
    return _layers("affine", "con", "relu", "affine", "con")


def _ares() -> list[Wrapper]:
    # relu<add_prev1<block<N,affine,1,tag1<SUBNET>>>>
    return [*_layers("relu"), ("layer", "add_prev", 1), *_block(), ("tag", "", 1)]


def _ares_down() -> list[Wrapper]:
    # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUBNET>>>>>>>
    return [
        *_layers("relu"),
        ("layer", "add_prev", 2),
        *_layers("avg_pool"),
        ("skip", "", 1),
        ("tag", "", 2),
        *_block(),
        ("tag", "", 1),
    ]


def resnet_v1_type() -> list[Wrapper]:
    """``anet_type`` of dlib's face recognition example, outermost first (below the loss layer)."""
    levels: list[Wrapper] = _layers("fc", "avg_pool")
    levels += _ares_down()  # alevel0: 256
    levels += _ares() + _ares() + _ares_down()  # alevel1: 256
    levels += _ares() + _ares() + _ares_down()  # alevel2: 128
    levels += _ares() + _ares() + _ares() + _ares_down()  # alevel3: 64
    levels += _ares() + _ares() + _ares()  # alevel4: 32
    levels += _layers("max_pool", "relu", "affine", "con")
    return levels


def _read_details(stream: DlibStream, kind: str, tag: int) -> list[Op]:
    if kind == "con":
        version = stream.expect_string("con_4", "con_5", "con_6")
        params = stream.read_tensor().reshape(-1)
        num_filters = stream.read_int()
        kh, kw = stream.read_int(), stream.read_int()
        sy, sx = stream.read_int(), stream.read_int()
        py, px = stream.read_int(), stream.read_int()
        filters = stream.read_alias_tensor()
        stream.read_alias_tensor()  # biases
        for _ in range(4):
            stream.read_float()  # learning-rate and weight-decay multipliers
        use_bias = True
        if version in ("con_5", "con_6"):
            use_bias = stream.read_bool()
        if version == "con_6":
            stream.read_bool()  # use_relu: a training-time fusion flag
        n_weights = int(np.prod(filters))
        conv_weights: np.ndarray = params[:n_weights].reshape(filters)
        if conv_weights.shape[0] != num_filters or conv_weights.shape[2:] != (kh, kw):
            raise ModelError("inconsistent convolution shape in dlib model file")
        bias = params[n_weights : n_weights + num_filters] if use_bias else None
        return [Conv(weights=conv_weights, bias=bias, stride=(sy, sx), padding=(py, px))]
    if kind == "affine":
        version = stream.expect_string("affine_", "affine_2")
        params = stream.read_tensor().reshape(-1)
        gamma_shape = stream.read_alias_tensor()
        stream.read_alias_tensor()  # beta has gamma's shape
        stream.read_int()  # mode: CONV_MODE or FC_MODE; per-channel either way here
        if version == "affine_2" and stream.read_bool():
            return []  # a disabled affine layer is the identity
        n = int(np.prod(gamma_shape))
        return [Affine(gamma=params[:n].copy(), beta=params[n : 2 * n].copy())]
    if kind == "relu":
        version = stream.expect_string("relu_", "relu_2")
        if version == "relu_2" and stream.read_bool():
            return []
        return [Relu()]
    if kind in ("max_pool", "avg_pool"):
        stream.expect_string(f"{kind}_2")
        kh, kw = stream.read_int(), stream.read_int()
        sy, sx = stream.read_int(), stream.read_int()
        py, px = stream.read_int(), stream.read_int()
        mode: Literal["max", "avg"] = "max" if kind == "max_pool" else "avg"
        return [Pool(mode=mode, size=(kh, kw), stride=(sy, sx), padding=(py, px))]
    if kind == "add_prev":
        stream.expect_string("add_prev_")
        return [AddTagged(tag=tag)]
    if kind == "fc":
        version = stream.expect_string("fc_2", "fc_3")
        outputs, inputs = stream.read_int(), stream.read_int()
        params = stream.read_tensor().reshape(-1)
        stream.read_alias_tensor()  # weights
        stream.read_alias_tensor()  # biases
        bias_mode = stream.read_int()  # 0 = FC_HAS_BIAS, 1 = FC_NO_BIAS
        for _ in range(4):
            stream.read_float()
        if version == "fc_3":
            stream.read_bool()  # use_bias
        weights = params[: inputs * outputs].reshape(inputs, outputs)
        bias = params[inputs * outputs : inputs * outputs + outputs] if bias_mode == 0 else None
        return [Dense(weights=weights, bias=bias)]
    raise ModelError(f"no reader for dlib layer kind {kind!r}")


def _skip_layer_state(stream: DlibStream, version: int, innermost: bool) -> None:
    """The training state add_layer writes after its details; inference needs none of it."""
    for _ in range(3):
        stream.read_bool()
    stream.read_tensor()  # x_grad
    stream.read_tensor()  # cached_output
    if innermost:
        stream.read_tensor()  # grad_final
        if version >= 3:
            stream.read_int()  # sample expansion factor
    elif version >= 2:
        stream.read_tensor()  # params_grad


def read_network(data: bytes, net_type: list[Wrapper]) -> DlibNetwork:
    """Parse a dlib ``add_loss_layer<loss_metric, net_type>`` serialization."""
    stream = DlibStream(data)
    if stream.read_int() != 1:
        raise ModelError("not a dlib network file (unexpected loss-layer version)")
    loss = stream.expect_string("loss_metric_", "loss_metric_2")
    if loss == "loss_metric_2":
        stream.read_float()
        stream.read_float()

    # Walk inwards: every wrapper writes its version before its sub-network.
    versions: list[int] = []
    for wrapper in net_type:
        version = stream.read_int()
        if wrapper[0] in ("tag", "skip") and version != 1:
            raise ModelError(f"unexpected {wrapper[0]} layer version {version} in dlib model file")
        versions.append(version)

    # The innermost layer holds the input layer before its own details.
    stream.expect_string("input_rgb_image_sized")
    mean = (stream.read_float(), stream.read_float(), stream.read_float())
    rows, cols = stream.read_int(), stream.read_int()
    if rows != cols:
        raise ModelError("only square dlib inputs are supported")

    forward: list[Op] = [InputRGB(size=rows, mean_rgb=mean)]
    innermost_index = len(net_type) - 1
    for index in range(innermost_index, -1, -1):
        wrapper = net_type[index]
        if wrapper[0] == "tag":
            forward.append(Tag(tag=wrapper[2]))
            continue
        if wrapper[0] == "skip":
            forward.append(Skip(tag=wrapper[2]))
            continue
        forward += _read_details(stream, wrapper[1], wrapper[2])
        _skip_layer_state(stream, versions[index], innermost=index == innermost_index)

    if stream.pos != len(data):
        raise ModelError(f"dlib model file has {len(data) - stream.pos} unread bytes: not the expected network")
    return DlibNetwork(ops=forward, loss=loss)


def read_resnet_v1(path: Path) -> DlibNetwork:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read dlib model {path}: {exc.strerror}") from exc
    return read_network(data, resnet_v1_type())
