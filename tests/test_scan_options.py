"""`openlfr scan` options that need no video: cameras from a TOML file, regions, evidence, clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from openlfr.cli.scan import cameras_from, parse_evidence, parse_roi
from openlfr.errors import OpenLFRError
from openlfr.settings import Settings
from openlfr.vision.types import Box
from tests.streamkit import openlfr_env, run_openlfr


def test_cameras_from_a_file_and_the_command_line(tmp_path: Path) -> None:
    spec = tmp_path / "cameras.toml"
    spec.write_text(
        '[[camera]]\nname = "entrance"\nurl = "rtsp://10.0.0.5/stream1"\nfps_cap = 10\nroi = "0,100,1920,1000"\n'
        '[[camera]]\nurl = "rtsp://10.0.0.6/stream1"\nmin_face_px = 60\n'
    )
    cameras = cameras_from(["/videos/exit.mp4", "/videos/exit.mp4"], spec, 0.0, None, None)
    assert [c.name for c in cameras] == ["entrance", "10.0.0.6-stream1", "exit", "exit-2"]
    assert cameras[0].fps_cap == 10.0 and cameras[0].roi == Box(0, 100, 1920, 1000)
    assert cameras[1].min_face_px == 60 and cameras[1].roi is None


@pytest.mark.parametrize(
    ("text", "message"),
    [('[[camera]]\nname = "a"\n', "needs a url"), ("[[camera]\n", "not a valid TOML"), (None, "no such file")],
)
def test_bad_camera_files(tmp_path: Path, text: str | None, message: str) -> None:
    spec = tmp_path / "cameras.toml"
    if text is not None:
        spec.write_text(text)
    with pytest.raises(OpenLFRError, match=message):
        cameras_from([], spec, 0.0, None, None)


def test_regions_and_evidence() -> None:
    assert parse_roi("10,20,300,400") == Box(10, 20, 300, 400)
    for bad in ("10,20,5,400", "a,b,c,d", "1,2,3"):
        with pytest.raises(OpenLFRError):
            parse_roi(bad)
    assert parse_evidence("3/7", Settings()) == (3, 7)
    assert parse_evidence(None, Settings()) == (2, 5)
    with pytest.raises(OpenLFRError, match="1 <= K <= N"):
        parse_evidence("4/2", Settings())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["scan", "x.mp4"], "say which watchlist to search"),
        (["scan", "x.mp4", "--watchlist", "w", "--threshold", "0.7", "--target-fpir", "1e-3"], "not both"),
        (["scan", "--watchlist", "w"], "no sources"),
        (["scan", "x.mp4", "--watchlist", "nobody-made-this"], "no watchlist named 'nobody-made-this'"),
    ],
)
def test_the_command_refuses_clearly(isolated_data_dir: Path, args: list[str], message: str) -> None:
    done = run_openlfr(args, openlfr_env(isolated_data_dir))
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
