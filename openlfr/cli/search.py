"""``openlfr search IMAGE --watchlist NAME --reason TEXT``: one face of a photo against a watchlist's active entries,
audited with its reason; the photo is kept nowhere unless the search is recorded for an investigation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from openlfr.cli.common import ByOption, FaceOption, JsonOption, face_choice, get_settings, wide_console
from openlfr.governance.searches import MAX_TOP, MIN_REASON_CHARS

if TYPE_CHECKING:
    from openlfr.services.photo_search import PhotoSearchResult


def register(app: typer.Typer) -> None:
    app.command("search")(search)


def search(
    image: Annotated[Path, typer.Argument(help="The photo to search with.")],
    watchlist: Annotated[str, typer.Option("--watchlist", metavar="NAME", help="The watchlist to search.")],
    reason: Annotated[
        str,
        typer.Option(
            "--reason", metavar="TEXT", help=f"Why you are searching ({MIN_REASON_CHARS}+ characters; audited)."
        ),
    ],
    top: Annotated[int, typer.Option("--top", metavar="N", help=f"How many candidates to show (1-{MAX_TOP}).")] = 5,
    face: FaceOption = None,
    investigation: Annotated[
        str | None,
        typer.Option(
            "--investigation",
            metavar="NAME",
            help="Record the search for this investigation (keeps the searched face until probe retention ends).",
        ),
    ] = None,
    by: ByOption = None,
    as_json: JsonOption = False,
) -> None:
    """Search a watchlist for the face in a photo: the top candidates with their scores and false-match rates."""
    from openlfr.services.context import Context
    from openlfr.services.photo_search import SearchRequest, search_photo
    from openlfr.store.db import open_store
    from openlfr.store.watchlists import get_watchlist
    from openlfr.vision.engine import build_engine
    from openlfr.vision.image_io import load_rgb

    choice = face_choice(face)
    # Checked before the photo is read or a model loaded: a refused search does nothing at all.
    request = SearchRequest(watchlist, reason, top, choice, investigation).checked()
    settings = get_settings()
    ctx = Context.local(settings, by)
    store = open_store(settings)
    try:
        with store.session() as session:
            get_watchlist(session, request.watchlist)
        pixels = load_rgb(image, settings.max_image_pixels)
        engine = build_engine(settings)
        with store.session() as session:
            result = search_photo(session, ctx, engine, pixels, request)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(result.as_dict()))
    else:
        show(result)


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"1 in {1 / value:,.0f}" if value > 0 else "< measurable"


def show(result: PhotoSearchResult) -> None:
    probe = result.probe
    typer.echo(
        f"searched {result.people} people ({result.references} reference photos) on {result.watchlist!r} with face "
        f"{probe.number} of {probe.faces_found} ({probe.quality.inter_eye_px:.0f} px between the eyes); "
        f"audit entry {result.audit_seq}"
    )
    table = Table(caption=result.calibration)
    for column in ("#", "person", "name", "category", "score", "FMR", "false match", "reference photo"):
        table.add_column(column, overflow="fold")
    for c in result.candidates:
        table.add_row(
            str(c.rank),
            c.person,
            c.name,
            c.category,
            f"{c.score:.4f}",
            "-" if c.fmr is None else f"{c.fmr:.2e}" + (" (tail)" if c.fmr_extrapolated else ""),
            _rate(c.fmr),
            str(c.reference_image_id),
        )
    wide_console().print(table)
    if result.record_id is not None:
        typer.echo(
            f"recorded for investigation {result.investigation!r} as search {result.record_id}; the searched face is "
            "kept until probe retention ends"
        )
    else:
        typer.echo("the photo was not kept")
