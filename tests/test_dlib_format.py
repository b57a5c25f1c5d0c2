import math

import numpy as np
import pytest

from openlfr.errors import ModelError
from openlfr.modelbuild.dlib_format import Conv, DlibStream, read_resnet_v1
from openlfr.vision.model_files import RESNET_FILE, model_file


def test_integers_follow_dlibs_control_byte():
    stream = DlibStream(bytes([0x01, 0x05, 0x81, 0x05, 0x02, 0x00, 0x01, 0x01, 0x00]))
    assert [stream.read_int() for _ in range(4)] == [5, -5, 256, 0]


def test_float_is_mantissa_times_two_to_the_exponent():
    # 3 * 2^-2 = 0.75; exponent -2 is encoded with the sign bit
    stream = DlibStream(bytes([0x01, 0x03, 0x81, 0x02, 0x01, 0x01, 0x02, 0x00, 0x7D]))
    assert stream.read_float() == 0.75
    assert math.isinf(stream.read_float())  # exponent 32000 marks infinity


def test_strings_bools_and_truncation():
    stream = DlibStream(bytes([0x01, 0x03]) + b"abc" + b"1")
    assert stream.read_string() == "abc"
    assert stream.read_bool() is True
    with pytest.raises(ModelError):
        stream.read_int()


def test_resnet_file_parses_to_the_published_architecture():
    network = read_resnet_v1(model_file(RESNET_FILE))
    convs = [op for op in network.ops if isinstance(op, Conv)]
    assert len(convs) == 29  # 1 stem + 14 residual blocks x 2
    assert convs[0].weights.shape == (32, 3, 7, 7)
    assert convs[-1].weights.shape == (256, 256, 3, 3)
    assert network.ops[-1].kind == "dense"
    assert network.ops[-1].weights.shape == (256, 128)
    assert all(np.isfinite(c.weights).all() for c in convs)


def test_truncated_model_is_a_clear_error(tmp_path):
    source = model_file(RESNET_FILE).read_bytes()
    broken = tmp_path / "broken.dat"
    broken.write_bytes(source[: len(source) // 2])
    with pytest.raises(ModelError, match="ends early"):
        read_resnet_v1(broken)
