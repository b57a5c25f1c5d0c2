"""The command line's rough edges (issue 19, item 8; `--version` and the start-up line of item 5).

* ``openlfr --help`` and every command's help load none of the heavy libraries (their speed is measured by
  benchmarks/cli_startup.py), read with real placeholders (``--port PORT``, ``IMAGE``, no ``<bool>``, no
  ``{image}``) and mark every required option.
* ``openlfr --version``; ``serve --port 99999`` and ``OPENLFR_SERVER_PORT=99999`` refused in one line.
* ``serve`` and ``worker`` say what they run with on their first line, the database password left out.
* ``users list`` is a table with a header; a missing or unreadable video is refused before a model is loaded or
  anything recorded; an empty cell of the records CSV is empty.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import select
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from openlfr.governance.records import build_record, records_csv
from tests.conftest import OPENLFR_BIN
from tests.serverkit import FAST_HASHING

HEAVY = ("numpy", "onnxruntime", "fastapi", "uvicorn", "sqlalchemy", "av", "cv2", "scipy", "dlib", "faiss")

# Runs in a fresh interpreter: every command's help and the heavy libraries it loaded; then scans with a model file
# that is not there, of a missing, an unreadable and a readable video, and of a missing one beside a readable one.
# The first two must fail on their source (checked before any model); the others start, and fail on the model.
WALK = """
import json, sys
import typer.main
from typer.testing import CliRunner
from openlfr.cli.main import app
heavy = {heavy!r}
runner = CliRunner()

def paths(command, prefix):
    yield prefix
    for name, sub in sorted(getattr(command, "commands", {{}}).items()):
        yield from paths(sub, [*prefix, name])

shown = lambda p: runner.invoke(app, [*p, "--help"], prog_name="openlfr").output
helps = {{" ".join(p): shown(p) for p in paths(typer.main.get_command(app), [])}}
after_help = [name for name in heavy if name in sys.modules]
scans = {{}}
for name, sources in json.loads(sys.argv[1]).items():
    done = runner.invoke(app, ["scan", *sources, "--watchlist", "wanted"])
    scans[name] = {{"code": done.exit_code, "error": str(done.exception)}}
print(json.dumps({{"helps": helps, "after_help": after_help, "scans": scans}}))
"""


def tiny_video(path: Path) -> Path:
    """Five grey frames, a video FFmpeg reads."""
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for _ in range(5):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((64, 64, 3), 128, np.uint8), format="rgb24")))
        out.mux(stream.encode())
    return path


def openlfr(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(OPENLFR_BIN), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("walk")
    not_a_video = folder / "notes.mp4"
    not_a_video.write_text("this is not a video\n")
    missing, readable = str(folder / "no-such-clip.mp4"), str(tiny_video(folder / "grey.mp4"))
    scans = {
        "missing": [missing],
        "unreadable": [str(not_a_video)],
        "readable": [readable],
        "mixed": [missing, readable],
    }
    env = {**os.environ, "OPENLFR_DATA_DIR": str(folder / "data"), "COLUMNS": "160"}
    env.pop("OPENLFR_DATABASE_URL", None)
    created = subprocess.run([str(OPENLFR_BIN), "watchlist", "create", "wanted"], env=env, capture_output=True)
    assert created.returncode == 0, created.stderr
    done = subprocess.run(
        [sys.executable, "-c", WALK.format(heavy=HEAVY), json.dumps(scans)],
        capture_output=True,
        text=True,
        env={**env, "OPENLFR_EMBEDDER_MODEL": str(folder / "no-such-model.onnx")},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    result["database"] = folder / "data" / "openlfr.db"
    return result


def test_help_loads_no_heavy_library(walked: dict[str, Any]) -> None:
    assert len(walked["helps"]) > 20  # every command and group was shown
    assert walked["after_help"] == []


def test_help_shows_real_placeholders_and_marks_what_is_required(walked: dict[str, Any]) -> None:
    helps: dict[str, str] = walked["helps"]
    for command, text in helps.items():
        assert "Usage: openlfr" in text, command
        assert re.findall(r"<[a-z][^<>\s]*(?: range)?>", text) == [], command  # <bool>, <list[str]>, <int range>
        assert re.findall(r"\{[a-z_]+\}", text) == [], command  # {image}
    assert "Usage: openlfr search [OPTIONS] IMAGE" in helps["search"]
    assert "Usage: openlfr scan [OPTIONS] [SOURCE]..." in helps["scan"]
    row = {line.split("--")[1].split()[0]: line for line in helps["search"].splitlines() if " --" in line}
    assert "*" in row["reason"] and "*" in row["watchlist"]  # required, and shown so
    assert "TEXT" in row["reason"] and row["json"].split("--json", 1)[1].split()[0] == "Print"  # a flag: no value
    assert re.search(r"--port\s+PORT\s+\[1<=x<=65535\]", helps["serve"])
    assert re.search(r"\*\s+--person\s+ID\s", helps["watchlist add"])
    assert "Usage: openlfr watchlist add [OPTIONS] NAME [PHOTO]..." in helps["watchlist add"]


def test_a_scan_checks_its_sources_before_loading_models_or_recording(walked: dict[str, Any]) -> None:
    scans = walked["scans"]
    assert scans["missing"]["code"] == 1 and "no-such-clip.mp4: no such file" in scans["missing"]["error"]
    assert scans["unreadable"]["code"] == 1 and "not a video" in scans["unreadable"]["error"]
    assert "notes.mp4" in scans["unreadable"]["error"]
    for started in ("readable", "mixed"):  # the models come next, and are not there
        assert scans[started]["code"] == 1 and "no such model file" in scans[started]["error"]
    with sqlite3.connect(walked["database"]) as db:
        assert db.execute("SELECT count(*) FROM deployments").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM audit_log WHERE action LIKE 'scan.%'").fetchone() == (0,)


def test_version_and_ports_out_of_range() -> None:
    shown = openlfr("--version")
    assert shown.returncode == 0 and shown.stdout.strip() == f"openlfr {version('openlfr')}"
    for args, env, named in [
        (["serve", "--port", "99999"], {}, "--port"),
        (["serve"], {"OPENLFR_SERVER_PORT": "99999"}, "OPENLFR_SERVER_PORT"),
    ]:
        refused = openlfr(*args, env=env)
        assert refused.returncode == 2, refused.stderr
        assert "Traceback" not in refused.stderr and named in refused.stderr and "65535" in refused.stderr


def first_line(args: list[str], env: dict[str, str]) -> str:
    """The first line a long-running command writes to stderr; the command is then stopped."""
    process = subprocess.Popen(
        [str(OPENLFR_BIN), *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
    )
    try:
        assert process.stderr is not None
        ready, _, _ = select.select([process.stderr], [], [], 120)
        assert ready, "no start-up line within 120 s"
        return process.stderr.readline().strip()
    finally:
        process.kill()
        process.wait(timeout=30)


def test_serve_and_worker_say_what_they_run_with(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "OPENLFR_DATA_DIR": str(data)}
    env.pop("OPENLFR_DATABASE_URL", None)
    served = first_line(["serve", "--host", "127.0.0.1", "--port", "8765", "--no-pipelines"], env)
    assert f"openlfr {version('openlfr')}" in served and "http://127.0.0.1:8765" in served
    assert f"sqlite {data / 'openlfr.db'}" in served and f"data {data}" in served
    assert "cameras: none here (left to `openlfr worker`)" in served
    assert "execution provider cpu (CPUExecutionProvider" in served
    database = "postgresql+psycopg://lfr:s3cret-pw@127.0.0.1:1/openlfr"
    working = first_line(["worker"], {**env, "OPENLFR_DATABASE_URL": database, "OPENLFR_WORKER_NAME": "box-7"})
    assert f"openlfr {version('openlfr')} worker box-7" in working
    assert "postgresql lfr@127.0.0.1:1/openlfr" in working and "s3cret" not in working
    assert "cameras: those of live deployments" in working


def test_users_list_is_a_table_with_a_header() -> None:
    env = {**FAST_HASHING}
    for name, extra in (("olly", ["--name", "Olly Op"]), ("ada", [])):
        made = openlfr(
            "users",
            "create",
            name,
            "--role",
            "operator",
            *extra,
            "--password-stdin",
            env=env,
            stdin="a-password-long-enough\n",
        )
        assert made.returncode == 0, made.stderr
    lines = [line.split() for line in openlfr("users", "list").stdout.splitlines() if line.strip()]
    assert lines == [
        ["user", "role", "status", "name"],
        ["ada", "operator", "active"],
        ["olly", "operator", "active", "Olly", "Op"],
    ]


def test_an_empty_rate_is_an_empty_csv_cell() -> None:
    start = datetime(2026, 5, 1, 9, tzinfo=UTC)
    record = build_record(
        1, "Oxford St", "Oxford St", "wanted", "ended", start, start + timedelta(hours=2), None, 9, 0, []
    )
    row = next(csv.DictReader(io.StringIO(records_csv([record]))))
    assert row["false_alert_one_in"] == "" and row["false_alert_rate"] == "0.0"
