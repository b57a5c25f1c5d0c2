"""`make demo`: the main job on the embedded default (SQLite), in steps a newcomer can follow.

1. Find the faces in a group photo and save a picture with boxes.
2. With the shared test data present: build a watchlist in a demo SQLite database (two people from the
   Hamilton clip's stills and seven unrelated people as fillers), then watch the clip with `openlfr scan` and
   print the alerts. Each step is the real CLI command, printed before it runs, so it can be run by hand too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import typer

from openlfr.errors import OpenLFRError
from openlfr.settings import Settings


def _demo_image(folder: Path) -> tuple[Path | None, str]:
    group = folder / "crowd" / "group6.jpg"
    if group.is_file():
        return group, "the group photo from the shared test data"
    return None, "scikit-image's astronaut (shared test data not found)"


def find_faces(settings: Settings, folder: Path, out: Path) -> None:
    from openlfr.vision.draw import draw_faces
    from openlfr.vision.engine import build_engine
    from openlfr.vision.image_io import load_rgb, save_rgb

    path, what = _demo_image(folder)
    if path is not None:
        pixels = load_rgb(path, settings.max_image_pixels)
    else:
        try:
            from skimage import data as skdata
        except ImportError as exc:
            raise OpenLFRError("no demo image: set OPENLFR_TEST_DATA to the shared data folder") from exc
        pixels = skdata.astronaut()
    typer.echo(f"Step 1: finding faces in {what} ...")
    typer.echo("  (the first run converts dlib's face ResNet to ONNX; later runs reuse the cached model)")
    engine = build_engine(settings)
    faces = engine.faces(pixels, embed=True)
    typer.echo(f"  found {len(faces)} face(s) with the {engine.detector.name} detector; model {engine.model_id}")
    for index, face in enumerate(faces, 1):
        q = face.quality
        typer.echo(
            f"  face {index}: box {face.box.as_list()}, {q.face_height_px}px tall, "
            f"eyes {q.inter_eye_px:.0f}px apart, yaw {q.yaw_deg:+.0f} deg"
        )
    save_rgb(draw_faces(pixels, [(face.box, str(i)) for i, face in enumerate(faces, 1)]), out)
    typer.echo(f"  saved {out} with the boxes drawn")


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    shown = " ".join(f'"{a}"' if " " in a else a for a in args)
    typer.echo(f"  $ openlfr {shown}")
    result = subprocess.run(
        [sys.executable, "-m", "openlfr", *args], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise OpenLFRError(f"demo step failed: openlfr {shown}: {result.stderr.strip().splitlines()[-1:]}")
    return result


def watch_clip(settings: Settings, folder: Path) -> None:
    stills, clip = folder / "stills", folder / "video" / "short_hamilton_clip.mp4"
    if not (stills / "gallery").is_dir() or not clip.is_file():
        typer.echo("Step 2 skipped: the shared stills and video are not there (set OPENLFR_TEST_DATA)")
        return
    database = settings.data_dir / "demo" / "openlfr-demo.db"
    database.parent.mkdir(parents=True, exist_ok=True)
    database.unlink(missing_ok=True)  # the demo starts from nothing every time
    env = {**os.environ, "OPENLFR_DATABASE_URL": f"sqlite:///{database}"}
    typer.echo(f"Step 2: a watchlist in the demo database {database}, then a scan of the Hamilton clip")
    _run(["watchlist", "create", "demo", "--purpose", "OpenLFR demonstration"], env)
    for person, name in (("lin-manuel-miranda", "Lin-Manuel Miranda"), ("alex-lacamoire", "Alex Lacamoire")):
        _run(
            ["watchlist", "add", "demo", "--person", person, "--name", name, "--category", "other",
             "--reason", "demonstration", "--legal-basis", "none: demo data", "--image", str(stills / f"{person}.png"),
             "--allow-duplicate", "--by", "demo"],
            env,
        )  # fmt: skip
    _run(
        ["watchlist", "import", "demo", str(stills / "gallery"), "--category", "other", "--reason", "filler",
         "--legal-basis", "none: demo data", "--face", "largest", "--by", "demo", "--json"],
        env,
    )  # fmt: skip
    scan = _run(["scan", str(clip), "--watchlist", "demo", "--json"], env)
    for line in scan.stdout.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("type") == "alert":
            typer.echo(
                f"  ALERT: {event['person']} on camera {event['camera']}, track {event['track']}, "
                f"score {event['score']:.2f} - an officer must now look at it and decide"
            )
        elif event.get("type") == "summary":
            typer.echo(
                f"  summary: {event['frames']} frames, {event['faces_seen']} faces seen, {event['tracks']} tracks, "
                f"{event['alerts']} alert(s), {event['fps']:.0f} frames/s; nothing kept of anyone else"
            )


def run_demo(settings: Settings, data: Path | None, out: Path) -> None:
    folder = data or settings.test_data
    find_faces(settings, folder, out)
    watch_clip(settings, folder)
