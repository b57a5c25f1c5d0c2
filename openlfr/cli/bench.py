"""``openlfr bench ...`` and ``openlfr calibrate``: benchmarks and the calibration table, on real data. The work is
in ``openlfr.bench``; each command imports it when it runs (the face models and LFW readers are slow to load)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from openlfr.cli.bench_equitability import register as register_equitability
from openlfr.cli.common import JsonOption, WorkersOption, get_settings
from openlfr.cli.help_text import App

bench_app = App(help="Benchmarks on real data.")


def register(app: typer.Typer) -> None:
    """``openlfr calibrate`` (a command of its own); ``bench`` is added where ``openlfr --help`` lists it."""
    app.command("calibrate")(calibrate)


def print_figures(figures: dict[str, object], as_json: bool) -> None:
    """A benchmark's figures: one JSON object, or one "key: value" line each."""
    if as_json:
        typer.echo(json.dumps(figures))
        return
    for key, value in figures.items():
        typer.echo(f"{key}: {json.dumps(value) if isinstance(value, dict) else value}")


@bench_app.command("lfw")
def bench_lfw(
    data: Annotated[Path, typer.Option(help="LFW folder holding pairs.txt and images/.")],
    folds: Annotated[int, typer.Option(min=1, max=10, help="Use the first N folds.")] = 10,
    as_json: JsonOption = False,
    flip: Annotated[bool, typer.Option(help="Average each embedding with its mirror image's.")] = True,
    stills: Annotated[
        bool,
        typer.Option(
            "--stills/--live",
            help="Stills profile (CNN detector fallback, 68-point second alignment, jitter) or the live one.",
        ),
    ] = True,
    workers: WorkersOption = 2,
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
    as_json: JsonOption = False,
) -> None:
    """Detection recall at IoU >= 0.5, split by face height."""
    from openlfr.bench.detection import run_detection_recall

    result = run_detection_recall(data, get_settings(), detector, upsample=upsample, scale=scale)
    print_figures(result, as_json)


@bench_app.command("identify")
def bench_identify(
    data: Annotated[Path, typer.Option(help="LFW folder holding images/<Name>/<Name>_NNNN.jpg.")],
    as_json: JsonOption = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Save the DET curve (PNG).")] = None,
    identities: Annotated[int | None, typer.Option(min=4, help="Only the first N identities by name.")] = None,
    workers: WorkersOption = 2,
    enrol_images: Annotated[
        int, typer.Option(min=1, max=20, help="Up to N photos per enrolled person (for people who have them).")
    ] = 1,
    probe_images: Annotated[
        int, typer.Option(min=1, max=20, help="Probes of up to M photos of one person, as a track gives several looks.")
    ] = 1,
    second_opinion: Annotated[
        bool, typer.Option(help="Also SFace re-scoring what MobileFaceNet screens in (embeds LFW with SFace once).")
    ] = True,
) -> None:
    """Open-set 1:N identification on LFW: FNIR at fixed FPIR, and a hold-out check of the calibration; then the
    ways of scoring (single references and looks, person templates, track fusion, ...) side by side."""
    from openlfr.bench.identify import run_identify
    from openlfr.bench.identify_variants import format_table

    result = run_identify(
        get_settings(),
        data,
        identities_limit=identities,
        workers=workers,
        quiet=as_json,
        plot=plot,
        enrol_images=enrol_images,
        probe_images=probe_images,
        second_opinion=second_opinion,
    )
    if as_json:
        print_figures(result, as_json)
        return
    variants = result.pop("variants")
    print_figures(result, as_json)
    typer.echo(f"\nenrol images {enrol_images}, probe images {probe_images}:")
    typer.echo(format_table(variants))  # type: ignore[arg-type]


def calibrate(
    data: Annotated[Path, typer.Option(help="LFW folder holding images/<Name>/<Name>_NNNN.jpg.")],
    out: Annotated[Path | None, typer.Option(help="Where to write the table (default: in the data dir).")] = None,
    as_json: JsonOption = False,
    workers: WorkersOption = 2,
    reference_images: Annotated[
        int | None,
        typer.Option(min=1, help="Only each person's first N images as references (default: every image)."),
    ] = None,
    second_opinion: Annotated[
        bool,
        typer.Option(
            "--second-opinion",
            help="The fused score's table instead (OPENLFR_SECOND_OPINION's model re-scoring what the current "
            "model screens in), per stranger on bench identify's protocol.",
        ),
    ] = False,
) -> None:
    """Measure the match-score -> false match rate table of the current model on LFW and write it."""
    if second_opinion:
        from openlfr.bench.second_opinion import run_calibrate_second_opinion

        print_figures(run_calibrate_second_opinion(get_settings(), data, out, workers=workers, quiet=as_json), as_json)
        return
    from openlfr.bench.calibrate_run import run_calibrate

    figures = run_calibrate(
        get_settings(), data, out, workers=workers, quiet=as_json, reference_images=reference_images
    )
    print_figures(figures, as_json)


register_equitability(bench_app)
