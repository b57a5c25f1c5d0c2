"""``openlfr watchlist ...``: create watchlists, enrol people (one at a time or a folder), list, show, remove,
expire, re-embed under the current model. Every command works on the configured store (SQLite by default,
PostgreSQL by ``OPENLFR_DATABASE_URL``). Each command imports the store, the services and the face models when it
runs (they are slow to load, and ``openlfr --help`` needs none of them).
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from openlfr.cli.common import ByOption, FaceOption, JsonOption, face_choice, get_settings, wide_console
from openlfr.cli.help_text import App
from openlfr.clock import utc_now
from openlfr.errors import OpenLFRError
from openlfr.store.categories import CATEGORY_VALUES

if TYPE_CHECKING:
    from openlfr.enrolment.service import PersonDetails
    from openlfr.services.context import Context
    from openlfr.store.db import Store
    from openlfr.store.models import Person, Watchlist

watchlist_app = App(
    help="Watchlists: create them, enrol people from reference photos (quality-gated), list, show, remove, expire.",
    no_args_is_help=True,
)

err_console = Console(stderr=True, soft_wrap=True)
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$")
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}

# The listing's fields that `add` and `import` both take.
ReasonOption = Annotated[str, typer.Option(help="Why they are listed.")]
LegalBasisOption = Annotated[str, typer.Option(help="The power relied on, and where the photos come from.")]
ExpiresOption = Annotated[
    str | None, typer.Option(help="When they stop being searched: 30d, 2w, a date or a date-time.")
]
AllowDuplicateOption = Annotated[
    bool, typer.Option("--allow-duplicate", help="Enrol even if they look like someone already listed.")
]


def parse_when(text: str, now: datetime) -> datetime:
    """A moment as typed: ``30d``/``12h``/``2w``/``90m`` from now, a date (the end of that day, UTC) or an ISO
    date-time (UTC unless it says otherwise)."""
    relative = _RELATIVE.match(text.lower())
    if relative:
        return now + float(relative.group(1)) * _UNITS[relative.group(2)]
    try:
        day = date.fromisoformat(text.strip())
        return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise OpenLFRError(
            f"cannot read {text!r} as a time: give 30d, 12h, 2w, a date (2026-12-31) or an ISO date-time"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def configured_store() -> Store:
    from openlfr.store.db import open_store

    return open_store(get_settings())


def acting(by: str | None) -> Context:
    """The person at the keyboard (``--by NAME``, else ``cli:<login>``), for the audit log."""
    from openlfr.services.context import Context

    return Context.local(get_settings(), by)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def shown(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def listing_details(
    category: str | None, reason: str, legal_basis: str, expires: str | None, now: datetime
) -> PersonDetails:
    """What `add` and `import` are told about a listing, ``--expires`` read as a moment before any photo is; who
    is listed comes with each person."""
    from openlfr.enrolment.service import PersonDetails

    expires_at = parse_when(expires, now) if expires else None
    return PersonDetails(
        reference_id="", category=category, reason=reason, legal_basis=legal_basis, expires_at=expires_at
    )


def people_progress(doing: str, quiet: bool) -> tuple[Progress, TaskID]:
    """A bar on stderr counting people (the total once known) with the last one's name; none with ``--json``."""
    progress = Progress(
        TextColumn(doing),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
        TimeRemainingColumn(),
        console=err_console,
        disable=quiet,
        transient=True,
    )
    return progress, progress.add_task("people", total=None, last="")


def check_category(category: str | None) -> None:
    if category is not None and category not in CATEGORY_VALUES:
        raise OpenLFRError(f"unknown category {category!r}: one of {', '.join(CATEGORY_VALUES)}")


@watchlist_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A short unique name, e.g. 'westfield-2026-11-28'.")],
    purpose: Annotated[str, typer.Option(help="What the watchlist is for.")] = "",
    by: ByOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an empty watchlist."""
    from openlfr.services import watchlists

    now = utc_now()
    ctx = acting(by)
    with configured_store().session() as session:
        watchlist = watchlists.create_watchlist(session, ctx, name, purpose, now)
        result = {"name": watchlist.name, "purpose": watchlist.purpose, "created_by": watchlist.created_by}
    if as_json:
        typer.echo(json.dumps({**result, "created_at": _iso(now)}))
    else:
        typer.echo(f"created watchlist {name!r}")


@watchlist_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The watchlist.")],
    person: Annotated[str, typer.Option("--person", metavar="ID", help="The person's id (the force's reference).")],
    more_images: Annotated[
        list[Path] | None, typer.Argument(metavar="PHOTO", help="More photos (after --image).", show_default=False)
    ] = None,
    display_name: Annotated[str | None, typer.Option("--name", help="Display name (needed for a new person).")] = None,
    category: Annotated[str | None, typer.Option(help=f"One of {', '.join(CATEGORY_VALUES)}.")] = None,
    image: Annotated[
        list[Path] | None, typer.Option("--image", help="A reference photo (repeat, or list several).")
    ] = None,
    reason: ReasonOption = "",
    legal_basis: LegalBasisOption = "",
    expires: ExpiresOption = None,
    face: FaceOption = None,
    allow_duplicate: AllowDuplicateOption = False,
    by: ByOption = None,
    as_json: JsonOption = False,
) -> None:
    """Enrol a person from one or more photos, or add photos to someone already listed. All or nothing."""
    from openlfr.enrolment.gate import QualityGate
    from openlfr.enrolment.photos import analyse_photos
    from openlfr.services.enrolment import enrol_person
    from openlfr.store.watchlists import get_watchlist
    from openlfr.vision.engine import build_engine

    photos = [*(image or []), *(more_images or [])]
    if not person.strip():
        raise OpenLFRError("say who this is: --person ID")
    if not photos:
        raise OpenLFRError("give at least one photo: --image PATH")
    check_category(category)
    choice = face_choice(face)
    settings = get_settings()
    now = utc_now()
    listing = listing_details(category, reason, legal_basis, expires, now)
    details = replace(listing, reference_id=person, display_name=display_name)
    store = configured_store()
    with store.session() as session:
        get_watchlist(session, name)  # fail fast, before loading the face models

    engine = build_engine(settings, stills=True, second_opinion=True)
    gate = QualityGate.from_settings(settings)
    results = analyse_photos(engine, photos, gate, choice, settings)
    ctx = acting(by)
    with store.session() as session:
        enrolled = enrol_person(session, ctx, name, details, results, allow_duplicate=allow_duplicate, now=now)
        summary = _person_json(enrolled, now)
        photos_in_all = len({image.sha256 for image in enrolled.images})  # a re-embedded photo has a row per model
    if as_json:
        typer.echo(json.dumps({"watchlist": name, **summary}))
    else:
        added = len(results)
        typer.echo(
            f"enrolled {summary['id']} ({summary['name']}) on {name!r}: {added} photo(s) added, "
            f"{photos_in_all} in all; searched until {shown(enrolled.expires_at)}"
        )


@watchlist_app.command("list")
def list_(as_json: JsonOption = False) -> None:
    """All watchlists, with how many people are searchable now and how many have expired."""
    from openlfr.services import watchlists

    with configured_store().session() as session:
        summaries = watchlists.list_watchlists(session)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "watchlists": [
                        {
                            "name": s.name,
                            "purpose": s.purpose,
                            "created_by": s.created_by,
                            "created_at": _iso(s.created_at),
                            "active_people": s.active_people,
                            "expired_people": s.expired_people,
                            "images": s.images,
                        }
                        for s in summaries
                    ]
                }
            )
        )
        return
    if not summaries:
        typer.echo("no watchlists yet (`openlfr watchlist create NAME`)")
        return
    table = Table(title="watchlists")
    for column in ("name", "purpose", "active", "expired", "photos", "created by", "created"):
        table.add_column(column)
    for s in summaries:
        table.add_row(
            s.name,
            s.purpose,
            str(s.active_people),
            str(s.expired_people),
            str(s.images),
            s.created_by,
            shown(s.created_at),
        )
    Console().print(table)


def _person_json(person: Person, now: datetime) -> dict[str, Any]:
    return {
        "id": person.reference_id,
        "name": person.display_name,
        "category": person.category,
        "reason": person.reason,
        "legal_basis": person.legal_basis,
        "added_by": person.added_by,
        "added_at": _iso(person.added_at),
        "expires_at": _iso(person.expires_at),
        "active": person.is_active(now),
        "images": [
            {
                "id": image.id,
                "source": image.source,
                "box": [image.box_left, image.box_top, image.box_right, image.box_bottom],
                "detector": image.detector,
                "quality": image.quality_dict(),
                "model_id": image.model_id,
                # every model this photo has an embedding of (re-embedding, the second opinion's SFace)
                "models": [row.model_id for row in person.images if row.sha256 == image.sha256],
                "added_by": image.added_by,
                "added_at": _iso(image.added_at),
            }
            for image in person.photos()
        ],
    }


@watchlist_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="The watchlist.")],
    person: Annotated[str | None, typer.Option("--person", help="Only this person, with each photo's quality.")] = None,
    as_json: JsonOption = False,
) -> None:
    """The people on a watchlist: category, photos, expiry, and whether they are searched now."""
    from openlfr.store.watchlists import get_person, get_watchlist

    now = utc_now()
    with configured_store().session() as session:
        watchlist: Watchlist = get_watchlist(session, name)
        people = [get_person(session, watchlist, person)] if person is not None else list(watchlist.people)
        listed = [_person_json(p, now) for p in people]
        header = {
            "name": watchlist.name,
            "purpose": watchlist.purpose,
            "created_by": watchlist.created_by,
            "created_at": _iso(watchlist.created_at),
        }
    if as_json:
        typer.echo(json.dumps({**header, "people": listed}))
        return
    active = sum(1 for p in listed if p["active"])
    typer.echo(f"{name}: {header['purpose'] or '(no purpose given)'}; created by {header['created_by']}")
    table = Table(caption=f"{active} of {len(listed)} searched now; times UTC")
    for column in ("id", "name", "category", "photos", "expires", "status", "reason"):
        table.add_column(column, overflow="fold", no_wrap=column in ("id", "expires", "category"))
    for p in listed:
        table.add_row(
            p["id"],
            p["name"],
            p["category"],
            str(len(p["images"])),
            p["expires_at"][:16].replace("T", " "),
            "[green]active[/]" if p["active"] else "[yellow]expired[/]",
            p["reason"],
        )
    console = wide_console()
    console.print(table)
    if person is not None:
        photos = Table(title=f"photos of {person}")
        for column in ("#", "source", "eye dist px", "sharpness", "yaw", "pitch", "model"):
            photos.add_column(column, overflow="fold")
        for image in listed[0]["images"]:
            q = image["quality"]
            photos.add_row(
                str(image["id"]),
                image["source"],
                f"{q['inter_eye_px']:.0f}",
                f"{q['sharpness']:.0f}",
                f"{q['yaw_deg']:+.0f}",
                f"{q['pitch_deg']:+.0f}",
                image["model_id"],
            )
        console.print(photos)


@watchlist_app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="The watchlist.")],
    person: Annotated[str | None, typer.Option("--person", help="Remove only this person.")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Needed to remove a whole watchlist.")] = False,
    by: ByOption = None,
) -> None:
    """Delete a person (or, with --yes, the whole watchlist) with their photos and embeddings."""
    from openlfr.services import watchlists
    from openlfr.store.watchlists import get_watchlist

    ctx = acting(by)
    with configured_store().session() as session:
        if person is not None:
            photos = watchlists.remove_person(session, ctx, name, person)
            message = f"removed {person} and {photos} photo(s) from {name!r}"
        else:
            count = len(get_watchlist(session, name).people)
            if not yes:
                raise OpenLFRError(
                    f"this deletes watchlist {name!r} with {count} people and their photos; add --yes to go ahead"
                )
            watchlists.remove_watchlist(session, ctx, name)
            message = f"removed watchlist {name!r} and the {count} people on it"
    typer.echo(message)


@watchlist_app.command("expire")
def expire_(
    name: Annotated[str, typer.Argument(help="The watchlist.")],
    person: Annotated[str | None, typer.Option("--person", help="Only this person (default: everyone on it).")] = None,
    at: Annotated[str | None, typer.Option(help="When (default now): 12h, a date or a date-time.")] = None,
    by: ByOption = None,
) -> None:
    """Stop searching for a person, or everyone on a watchlist, now (or at --at). Never extends an expiry."""
    from openlfr.services import watchlists
    from openlfr.store.watchlists import get_watchlist

    ctx = acting(by)
    now = utc_now()
    when = parse_when(at, now) if at else now
    with configured_store().session() as session:
        get_watchlist(session, name)
        changed = watchlists.expire(session, ctx, name, person, when)
    who = person if person is not None else f"{changed} people on {name!r}"
    if changed == 0:
        typer.echo(f"nothing to change: {person or 'everyone on ' + repr(name)} already expires by {shown(when)}")
    elif when <= now:
        typer.echo(f"expired {who}: no longer searched")
    else:
        typer.echo(f"{who} will stop being searched at {shown(when)}")


@watchlist_app.command("reembed")
def reembed(
    name: Annotated[str, typer.Argument(help="The watchlist.")],
    by: ByOption = None,
    as_json: JsonOption = False,
) -> None:
    """Give every listed person's photos an embedding of the current model, from the stored face pictures, so a
    list enrolled under another model is searched again. All or nothing per person; the old embeddings stay."""
    from openlfr.services.reembed import reembed_watchlist
    from openlfr.store.watchlists import get_watchlist
    from openlfr.vision.engine import build_engine

    ctx = acting(by)
    store = configured_store()
    with store.session() as session:
        get_watchlist(session, name)  # fail fast, before loading the face models
    engine = build_engine(ctx.settings, stills=True)
    progress, task = people_progress("re-embedding", quiet=as_json)
    with progress, store.session() as session:
        report = reembed_watchlist(
            session,
            ctx,
            name,
            engine=engine,
            on_start=lambda count: progress.update(task, total=count),
            on_progress=lambda done, _total, person: progress.update(task, completed=done, last=person),
        )
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        typer.echo(
            f"{name!r} under {report.model_id}: {len(report.reembedded)} people re-embedded "
            f"({report.images_added} photo(s)), {len(report.up_to_date)} already up to date, "
            f"{len(report.refused)} refused (kept their old embeddings)"
            + (f"; {report.expired_skipped} expired people left alone" if report.expired_skipped else "")
            + (
                f"; {report.second_images_added} photo(s) given {report.second_model_id} embeddings (second opinion)"
                if report.second_model_id
                else ""
            )
        )
        for refused in report.refused:
            err_console.print(f"refused {refused.person}: " + "; ".join(refused.reasons), markup=False)
        for refused in report.second_refused:
            err_console.print(
                f"no {report.second_model_id} embeddings for {refused.person} (the second opinion stays off for "
                "this list): " + "; ".join(refused.reasons),
                markup=False,
            )
    if report.refused:
        raise typer.Exit(1)
