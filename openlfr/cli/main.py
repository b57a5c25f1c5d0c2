"""The ``openlfr`` command: the top-level app, ``faces`` and ``demo``, and the command groups of the other modules
of this package (one module per group), registered in the order ``openlfr --help`` lists them.

Each command imports what it needs when it runs (the face models, NumPy, SQLAlchemy, FastAPI): ``openlfr --help``
and a mistyped option answer at once (benchmarks/cli_startup.py; tests/test_cli_snags.py checks none is loaded)."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

# Typer 0.29 carries its own copy of click; its exceptions are not re-exported (the lock pins Typer).
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from openlfr import __version__
from openlfr.cli import logs
from openlfr.cli.common import get_settings
from openlfr.cli.help_text import App
from openlfr.errors import OpenLFRError
from openlfr.text import first_line

app = App(no_args_is_help=True)

console = Console(stderr=True, soft_wrap=True)


def _show_version(asked: bool) -> None:
    if asked:
        typer.echo(f"openlfr {__version__}")
        raise typer.Exit()


@app.callback()
def openlfr(
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=_show_version, help="Print the version and exit.")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            dir_okay=False,
            help="The configuration file (default: $OPENLFR_CONFIG, or none).",
        ),
    ] = None,
    log_format: Annotated[
        logs.LogFormat, typer.Option("--log-format", help="How logs are written.")
    ] = logs.LogFormat.TEXT,
) -> None:
    """OpenLFR: live facial recognition for watchlist deployments, with the safeguards built in."""
    if config is not None:
        # Read by the settings (openlfr/config_file.py), in this process and in the ones it starts.
        os.environ["OPENLFR_CONFIG"] = str(config)
    logs.configure(log_format.value)


@app.command("faces")
def faces(
    image: Annotated[Path, typer.Argument(help="An image file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, embeddings included.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Save the image with boxes drawn (PNG).")] = None,
    detector: Annotated[str | None, typer.Option(help="retinaface, hog or mmod (default from settings).")] = None,
) -> None:
    """Find the faces in an image: box, detector score and quality."""
    from rich.table import Table

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


def demo(
    data: Annotated[
        Path | None, typer.Option(help="Shared test data folder (adds the group photo and the Hamilton clip).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Where to save the annotated picture.")] = Path("demo-faces.png"),
) -> None:
    """The main job end to end on registry photos: a watchlist, a clip, a scan with its alert (make demo)."""
    from openlfr.demo import run_demo

    run_demo(get_settings(), data, out)


from openlfr.cli import (  # noqa: E402
    audit,
    backup,
    bench,
    config,
    init,
    models,
    scan,
    search,
    server,
    users,
    watchlist,
    watchlist_import,
)

bench.register(app)
app.command("demo")(demo)
server.register(app)
scan.register(app)
search.register(app)
models.register(app)
app.add_typer(bench.bench_app, name="bench")
watchlist_import.register(watchlist.watchlist_app)
app.add_typer(watchlist.watchlist_app, name="watchlist")
users.register(app)
audit.register(app)
init.register(app)
backup.register(app)
config.register(app)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format=logs.TEXT_FORMAT)
    try:
        # Not standalone: click's own answer to a usage mistake is a boxed, multi-line report; ours is one line.
        result = app(standalone_mode=False)
    except OpenLFRError as exc:
        console.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)
    except NoArgsIsHelpError as exc:  # a command group named alone: its help, as click would show it
        print(exc.format_message())
        sys.exit(exc.exit_code)
    except UsageError as exc:
        see = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        console.print(f"[red]error:[/red] {first_line(exc.format_message())}{see}", highlight=False)
        sys.exit(2)
    except ClickException as exc:
        console.print(f"[red]error:[/red] {first_line(exc.format_message())}", highlight=False)
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        console.print("interrupted")
        sys.exit(130)
    # A command that stopped with ``typer.Exit(code)`` comes back here with its code.
    if isinstance(result, int) and not isinstance(result, bool):
        sys.exit(result)
