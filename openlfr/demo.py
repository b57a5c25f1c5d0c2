"""`make demo`: the main job on the embedded default, in a way a newcomer can follow."""

from __future__ import annotations

from pathlib import Path

import typer

from openlfr.errors import OpenLFRError
from openlfr.settings import Settings


def _demo_image(data: Path | None, settings: Settings) -> tuple[Path | None, str]:
    folder = data or settings.test_data
    group = folder / "crowd" / "group6.jpg"
    if group.is_file():
        return group, "the group photo from the shared test data"
    return None, "scikit-image's astronaut (shared test data not found)"


def run_demo(settings: Settings, data: Path | None, out: Path) -> None:
    from openlfr.vision.draw import draw_faces
    from openlfr.vision.engine import build_engine
    from openlfr.vision.image_io import load_rgb, save_rgb

    path, what = _demo_image(data, settings)
    if path is not None:
        pixels = load_rgb(path, settings.max_image_pixels)
    else:
        try:
            from skimage import data as skdata
        except ImportError as exc:
            raise OpenLFRError("no demo image: set OPENLFR_TEST_DATA to the shared data folder") from exc
        pixels = skdata.astronaut()
    typer.echo(f"OpenLFR demo: finding faces in {what} ...")
    typer.echo("  (first run converts dlib's face ResNet to ONNX; later runs reuse the cached model)")
    engine = build_engine(settings)
    faces = engine.faces(pixels, embed=True)
    typer.echo(f"  found {len(faces)} face(s) with the {engine.detector.name} detector; model {engine.model_id}")
    for index, face in enumerate(faces, 1):
        q = face.quality
        typer.echo(
            f"  face {index}: box {face.box.as_list()}, {q.face_height_px}px tall, eyes {q.inter_eye_px:.0f}px apart,"
            f" yaw {q.yaw_deg:+.0f} deg"
        )
    save_rgb(draw_faces(pixels, [(face.box, str(i)) for i, face in enumerate(faces, 1)]), out)
    typer.echo(f"saved {out} with the boxes drawn")
