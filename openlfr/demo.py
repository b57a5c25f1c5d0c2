"""`make demo`: the main job on the embedded default (SQLite), in steps a newcomer can follow.

Everything below runs with nothing but the registries: real photos from a PyPI package (``openlfr.demo_media``),
a watchlist of one of the people in them, a clip made from the other photos, `openlfr scan` of that clip and
the command that opens the console on the result. With the shared test data present, the demo also scans the
Hamilton clip, real footage being the harder case, for two of its performers.

Each step is the real CLI command, printed before it runs, so it can be run by hand too. Everything the demo
writes is in one folder of its own (``<data dir>/demo``: database, audit key, clip), made afresh every run.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import typer

from openlfr.demo_media import DemoClip, cached_photos, fetch_photos, make_clip
from openlfr.errors import OpenLFRError
from openlfr.settings import Settings

LISTED_PERSON = "barack-obama"
LISTED_PHOTO = "obama.jpg"  # the clip shows him in two other photos


@dataclass(frozen=True)
class ScanResult:
    alerted: list[str]  # person ids, one per alert


def demo_dir(settings: Settings) -> Path:
    return settings.data_dir / "demo"


def _env_prefix(folder: Path) -> str:
    return f"OPENLFR_DATA_DIR={shlex.quote(str(folder))}"


def find_faces(settings: Settings, pixels: np.ndarray, what: str, out: Path) -> None:
    from openlfr.vision.draw import draw_faces
    from openlfr.vision.engine import build_engine
    from openlfr.vision.image_io import save_rgb

    typer.echo(f"Step 2: finding faces in {what} ...")
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
    typer.echo(f"  $ {shlex.quote(_openlfr_command())} {shlex.join(args)}")
    result = subprocess.run(
        [sys.executable, "-m", "openlfr", *args], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        why = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise OpenLFRError(f"demo step failed: openlfr {shlex.join(args)}: {why}")
    return result


def _enrol(env: dict[str, str], watchlist: str, person: str, name: str, photo: Path) -> None:
    _run(
        ["watchlist", "add", watchlist, "--person", person, "--name", name, "--category", "other",
         "--reason", "demonstration", "--legal-basis", "none: demo data", "--image", str(photo), "--by", "demo"],
        env,
    )  # fmt: skip


def _scan(env: dict[str, str], clip: Path, watchlist: str) -> ScanResult:
    scan = _run(["scan", str(clip), "--watchlist", watchlist, "--json"], env)
    alerted: list[str] = []
    for line in scan.stdout.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if event.get("type") == "alert":
            alerted.append(event["person"])
            typer.echo(
                f"  ALERT: {event['person']} on camera {event['camera']}, track {event['track']}, "
                f"score {event['score']:.2f} - an officer must now look at it and decide"
            )
        elif event.get("type") == "summary":
            typer.echo(
                f"  summary: {event['frames']} frames, {event['faces_seen']} faces seen, {event['tracks']} tracks, "
                f"{event['alerts']} alert(s), {event['fps']:.0f} frames/s; nothing kept of anyone else"
            )
    return ScanResult(alerted)


def watch_demo_clip(env: dict[str, str], clip: DemoClip, photos: Path) -> None:
    typer.echo(f"Step 3: a watchlist in the demo database, with {clip.listed} enrolled from {LISTED_PHOTO}")
    _run(["watchlist", "create", "demo", "--purpose", "OpenLFR demonstration"], env)
    _enrol(env, "demo", LISTED_PERSON, clip.listed, photos / LISTED_PHOTO)
    typer.echo(f"Step 4: watching the clip for the people on that watchlist ({clip.seconds:.0f} s)")
    result = _scan(env, clip.path, "demo")
    others = ", ".join(clip.others)
    if result.alerted != [LISTED_PERSON]:
        raise OpenLFRError(
            f"the demo did not go as expected: alerts for {result.alerted or 'nobody'}, "
            f"expected one for {LISTED_PERSON} and none for {others}"
        )
    typer.echo(f"  as it should be: one alert, for {clip.listed}; none for {others}, who are not listed")


def watch_hamilton_clip(env: dict[str, str], folder: Path) -> None:
    stills, clip = folder / "stills", folder / "video" / "short_hamilton_clip.mp4"
    typer.echo("Step 5 (shared test data): real footage - a watchlist of two performers and seven others, then")
    typer.echo("  a scan of the Hamilton clip")
    _run(["watchlist", "create", "hamilton", "--purpose", "OpenLFR demonstration on real footage"], env)
    for person, name in (("lin-manuel-miranda", "Lin-Manuel Miranda"), ("alex-lacamoire", "Alex Lacamoire")):
        _enrol(env, "hamilton", person, name, stills / f"{person}.png")
    _run(
        ["watchlist", "import", "hamilton", str(stills / "gallery"), "--names-from", "folder", "--category", "other",
         "--reason", "filler", "--legal-basis", "none: demo data", "--face", "largest", "--by", "demo", "--json"],
        env,
    )  # fmt: skip
    _scan(env, clip, "hamilton")


def _openlfr_command() -> str:
    """How to call this installation's CLI from here (``.venv/bin/openlfr`` from the repository)."""
    script = Path(sys.executable).parent / "openlfr"
    if not script.is_file():
        return "openlfr"
    relative = os.path.relpath(script)
    return relative if not relative.startswith("..") else str(script)


def _print_console_commands(settings: Settings, folder: Path) -> None:
    openlfr = f"{_env_prefix(folder)} {shlex.quote(_openlfr_command())}"
    typer.echo("To decide on the alerts in the console (an operator's job), on this demo database:")
    typer.echo(f"  {openlfr} users create officer --role operator   # asks for a password")
    typer.echo(f"  {openlfr} serve")
    typer.echo(f"  then open http://{settings.server_host}:{settings.server_port}/ and log in as officer")


def run_demo(settings: Settings, data: Path | None, out: Path) -> None:
    shared = data or settings.test_data
    folder = demo_dir(settings)
    shutil.rmtree(folder, ignore_errors=True)  # the demo starts from nothing every time
    folder.mkdir(parents=True)
    env = {**os.environ, "OPENLFR_DATA_DIR": str(folder)}

    typer.echo("Step 1: real photos from a registry package, and a clip of people walking through the picture")
    if cached_photos(settings) is None:
        typer.echo("  fetching the test images of face_recognition 1.3.0 from PyPI (pip download, sha256 pinned)")
    photos = fetch_photos(settings)
    typer.echo(f"  photos: {photos}")
    clip = make_clip(photos, folder / "demo-clip.mp4")
    typer.echo(f"  clip: {clip.path} ({clip.seconds:.0f} s at 25 fps): {', '.join(clip.others)} alone, together,")
    typer.echo(f"  then {clip.listed} alone, then all three together")

    group = shared / "crowd" / "group6.jpg"
    if group.is_file():
        from openlfr.vision.image_io import load_rgb

        find_faces(settings, load_rgb(group, settings.max_image_pixels), "the group photo of the shared data", out)
    else:
        find_faces(settings, clip.last_frame, "the clip's last picture", out)

    watch_demo_clip(env, clip, photos)
    hamilton = shared / "video" / "short_hamilton_clip.mp4"
    if (shared / "stills" / "gallery").is_dir() and hamilton.is_file():
        watch_hamilton_clip(env, shared)
    _print_console_commands(settings, folder)
