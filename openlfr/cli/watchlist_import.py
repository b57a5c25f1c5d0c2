"""``openlfr watchlist import``: a folder of people, one sub-folder each, enrolled person by person with a progress
bar, then a table of who was enrolled, refused (with the reasons) or skipped. Who each person is comes from the
folder's people.csv, or from the sub-folders' names when the command is told so; never silently from either."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from openlfr.cli.common import ByOption, FaceOption, JsonOption, face_choice, wide_console
from openlfr.cli.watchlist import (
    AllowDuplicateOption,
    ExpiresOption,
    acting,
    check_category,
    configured_store,
    listing_details,
    people_progress,
    shown,
)
from openlfr.clock import utc_now
from openlfr.enrolment.people_csv import COLUMNS, PEOPLE_CSV, Listing, read_people_csv
from openlfr.errors import OpenLFRError
from openlfr.store.categories import CATEGORY_VALUES
from openlfr.text import escaped

if TYPE_CHECKING:
    from openlfr.enrolment.importer import ImportRow


def register(group: typer.Typer) -> None:
    """Add ``import`` to the ``watchlist`` commands (``openlfr.cli.main`` does, once both modules are loaded)."""
    group.command("import")(import_)


def import_(
    name: Annotated[str, typer.Argument(help="The watchlist.")],
    folder: Annotated[
        Path,
        typer.Argument(
            help=f"One sub-folder per person (its name is their id), photos inside, and a {PEOPLE_CSV} with the "
            f"header {','.join(COLUMNS)}: one row per sub-folder."
        ),
    ],
    names_from: Annotated[
        str | None,
        typer.Option(
            "--names-from",
            metavar="folder",
            help=f"Without a {PEOPLE_CSV}: 'folder' takes each sub-folder's name as the person's display name.",
        ),
    ] = None,
    category: Annotated[
        str | None,
        typer.Option(
            metavar="CATEGORY",
            help=f"For everyone whose category cell is blank (or without {PEOPLE_CSV}): {', '.join(CATEGORY_VALUES)}.",
        ),
    ] = None,
    reason: Annotated[
        str, typer.Option(metavar="TEXT", help="Why they are listed, for everyone whose reason cell is blank.")
    ] = "",
    legal_basis: Annotated[
        str,
        typer.Option(metavar="TEXT", help="The power relied on, for everyone whose legal_basis cell is blank."),
    ] = "",
    expires: ExpiresOption = None,
    face: FaceOption = None,
    allow_duplicate: AllowDuplicateOption = False,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Processes analysing photos.")] = 2,
    by: ByOption = None,
    as_json: JsonOption = False,
) -> None:
    """Enrol a folder of people; each person is enrolled whole or not at all, and refused without a name, category,
    reason or legal basis. Exit 1 if any was refused."""
    from openlfr.services.enrolment import import_folder  # the face models: loaded when the command runs
    from openlfr.store.watchlists import get_watchlist

    check_category(category)
    listings = _listings(folder, names_from)
    choice = face_choice(face)
    now = utc_now()
    template = listing_details(category, reason, legal_basis, expires, now)
    if template.expires_at is not None and template.expires_at <= now:
        raise OpenLFRError(f"the expiry {shown(template.expires_at)} has already passed")
    ctx = acting(by)
    store = configured_store()
    with store.session() as session:
        get_watchlist(session, name)

    progress, task = people_progress("enrolling", quiet=as_json)

    analysing = False  # the bar counts the people whose photos are analysed, not those refused or skipped before

    def started(count: int) -> None:
        nonlocal analysing
        analysing = True
        progress.update(task, total=count)

    def done(row: ImportRow) -> None:
        if analysing:
            progress.update(task, advance=1, last=f"{row.reference_id}: {row.status}")

    with progress:
        rows, ignored = import_folder(
            store,
            ctx,
            name,
            folder,
            template=template,
            choice=choice,
            allow_duplicate=allow_duplicate,
            workers=workers,
            listings=listings,
            now=now,
            on_person=done,
            on_start=started,
        )
    counts = {status: sum(1 for r in rows if r.status == status) for status in ("enrolled", "refused", "skipped")}
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "watchlist": name,
                    **counts,
                    "people": [
                        {"id": r.reference_id, "status": r.status, "photos": r.photos, "reasons": r.reasons}
                        for r in rows
                    ],
                    "ignored": ignored,
                }
            )
        )
    else:
        _print_import_table(name, rows, counts, ignored)
    if counts["refused"]:
        raise typer.Exit(1)


def _listings(folder: Path, names_from: str | None) -> dict[str, Listing] | None:
    """people.csv's rows by id; None where the sub-folders' names are to be the display names (said explicitly)."""
    if names_from not in (None, "folder"):
        raise OpenLFRError(f"--names-from {escaped(names_from)}: the only choice is 'folder'")
    people_csv = folder / PEOPLE_CSV
    if not folder.is_dir():
        return None  # the import says what is wrong with the folder
    if people_csv.is_file():
        if names_from is not None:
            raise OpenLFRError(f"{folder} has a {PEOPLE_CSV}: leave out --names-from to use it, or move it away")
        return read_people_csv(people_csv)
    if names_from is None:
        raise OpenLFRError(
            f"{folder} has no {PEOPLE_CSV} ({','.join(COLUMNS)}): add one, or give --names-from folder to use "
            "each sub-folder's name as the display name"
        )
    return None


def _print_import_table(name: str, rows: list[ImportRow], counts: dict[str, int], ignored: list[str]) -> None:
    every_row = len(rows) <= 100
    table = Table(
        title=f"import into {name!r}",
        caption=(
            f"{counts['enrolled']} enrolled, {counts['refused']} refused, {counts['skipped']} skipped"
            + ("" if every_row else " (enrolled people not listed one by one)")
        ),
    )
    for column in ("person", "result", "photos", "reasons"):
        table.add_column(column, overflow="fold")
    style = {"enrolled": "green", "refused": "red", "skipped": "yellow"}
    for row in rows:
        if every_row or row.status != "enrolled":
            table.add_row(
                row.reference_id,
                f"[{style[row.status]}]{row.status}[/]",
                str(row.photos),
                "\n".join(row.reasons),
            )
    wide_console().print(table)
    if ignored:
        typer.echo(f"ignored (not person folders): {', '.join(map(escaped, ignored))}")
