"""`openlfr faces` on bad input: one clear line, never a traceback."""

import json
import struct
import subprocess
import zlib

import pytest
from PIL import Image

from openlfr.settings import Settings
from openlfr.vision.engine import model_id_for
from tests.conftest import OPENLFR_BIN, require_data


def run_faces(*args):
    return subprocess.run([str(OPENLFR_BIN), "faces", *map(str, args)], capture_output=True, text=True, timeout=120)


def png_header_only(path, width, height):
    """A PNG whose header claims width x height pixels: what a decompression bomb looks like to a reader."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def assert_one_line_error(result, fragment):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]


def test_non_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n")
    assert_one_line_error(run_faces(path), "not an image")


def test_truncated_jpeg(tmp_path, astronaut):
    whole = tmp_path / "whole.jpg"
    Image.fromarray(astronaut).save(whole, quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert_one_line_error(run_faces(cut), "truncated")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert_one_line_error(run_faces(path), "empty")


def test_missing_file(tmp_path):
    assert_one_line_error(run_faces(tmp_path / "nowhere.jpg"), "no such file")


def test_decompression_bomb(tmp_path):
    assert_one_line_error(run_faces(png_header_only(tmp_path / "bomb.png", 20000, 20000)), "too large")


def test_image_without_a_face(tmp_path):
    from skimage import data

    path = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).save(path)
    result = run_faces(path)
    assert result.returncode == 0, result.stderr
    assert "no faces" in result.stdout


def test_json_and_boxes_out(tmp_path, astronaut):
    path = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    out = tmp_path / "boxes.png"
    result = run_faces(path, "--json", "--out", out)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    (face,) = report["faces"]  # her face only: the default detector does not take the patch on her suit for one
    assert face["detector"] == "retinaface" and len(face["landmarks"]) == 5
    assert report["model_id"] == model_id_for(Settings())
    assert abs(sum(x * x for x in face["embedding"]) - 1.0) < 1e-4
    assert set(face["quality"]) >= {"inter_eye_px", "sharpness", "yaw_deg"}
    drawn = Image.open(out)
    assert drawn.size == (astronaut.shape[1], astronaut.shape[0])


def test_group_photo_has_six_faces():
    group = require_data("crowd", "group6.jpg")
    result = run_faces(group, "--json")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["faces"]) == 6


@pytest.mark.parametrize("bad", ["--folds", "0"])
def test_bench_rejects_bad_folds(bad, tmp_path):
    result = subprocess.run(
        [str(OPENLFR_BIN), "bench", "lfw", "--data", str(tmp_path), "--folds", "0"], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr


def test_a_refused_setting_or_unknown_detector_is_one_line(tmp_path, astronaut, monkeypatch):
    path = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    monkeypatch.setenv("OPENLFR_DETECTOR_SCALE", "9")
    assert_one_line_error(run_faces(path), "OPENLFR_DETECTOR_SCALE=9")
    monkeypatch.delenv("OPENLFR_DETECTOR_SCALE")
    monkeypatch.setenv("OPENLFR_DETECTOR", "haar")
    assert_one_line_error(run_faces(path), "unknown detector 'haar'")
