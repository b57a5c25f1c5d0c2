"""Enrolment as one use case: a person (or more photos of someone listed) put on a watchlist from analysed
photos, with its audit entry, in the caller's transaction (:func:`enrol_person`). ``openlfr watchlist add``,
the API's upload (:func:`enrol_uploads`) and the folder import (:func:`import_folder`, one transaction per
person) all go through it; the analysis of the photos (detect, quality gate, embed) is the enrolment stage's.

Uploads are written to a private folder under the data directory (``openlfr.services.upload_staging``: never
the system temp folder; a crash's leftovers are swept at start-up) under names of our choosing (never the
client's), analysed by the same quality gate as the CLI, and the folder is deleted whatever happens.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from openlfr.clock import utc_now
from openlfr.enrolment import service
from openlfr.enrolment.engines import process_engine
from openlfr.enrolment.gate import FaceChoice, QualityGate
from openlfr.enrolment.importer import ImportRow, analyse_folders, scan_folder
from openlfr.enrolment.people_csv import PEOPLE_CSV, Listing
from openlfr.enrolment.photos import PhotoResult, analyse_photos
from openlfr.enrolment.service import DuplicateIndex, PersonDetails, check_reference_id
from openlfr.errors import EnrolmentRefused
from openlfr.services import upload_staging
from openlfr.services.context import Context
from openlfr.services.watchlists import existing
from openlfr.settings import Settings
from openlfr.store.db import Store
from openlfr.store.models import Person, Watchlist
from openlfr.text import escaped


def enrol_person(
    db: Session,
    ctx: Context,
    watchlist_name: str,
    details: PersonDetails,
    photos: Sequence[PhotoResult],
    *,
    allow_duplicate: bool = False,
    now: datetime | None = None,
    duplicates: DuplicateIndex | None = None,
    audit_details: dict[str, Any] | None = None,
) -> Person:
    """Enrol behind the quality gate, all or nothing (``EnrolmentRefused`` names each refused photo), and audit
    it; the default expiry and the duplicate threshold come from the settings."""
    moment = now or utc_now()
    settings = ctx.settings
    person = service.enrol(
        db,
        existing(db, watchlist_name),
        details,
        photos,
        actor=ctx.actor,
        now=moment,
        default_expiry=moment + timedelta(days=settings.watchlist_entry_days),
        duplicate_score=settings.enrol_duplicate_score,
        allow_duplicate=allow_duplicate,
        duplicates=duplicates,
    )
    ctx.audit(
        db,
        "watchlist.enrol",
        f"watchlist:{watchlist_name}/person:{person.reference_id}",
        {
            "photos": [photo.source for photo in photos],
            "category": person.category,
            "allow_duplicate": allow_duplicate,
            **(audit_details or {}),
        },
    )
    return person


# ----- uploaded photos (the API) -----


@dataclass(frozen=True)
class Upload:
    name: str  # the client's file name, already checked to be a plain one (``openlfr.api.uploads``)
    data: bytes


_ENGINE_LOCK = threading.Lock()  # one upload at a time through the process's stills engine


def analyse_uploads(settings: Settings, uploads: Sequence[Upload]) -> list[PhotoResult]:
    """Each upload through the enrolment quality gate; reports name the client's files, never our paths."""
    gate = QualityGate.from_settings(settings)
    with upload_staging.staged_folder(settings) as folder, _ENGINE_LOCK:
        paths = [Path(folder) / f"{index}{Path(upload.name).suffix.lower()}" for index, upload in enumerate(uploads)]
        for path, upload in zip(paths, uploads, strict=True):
            path.write_bytes(upload.data)
        results = analyse_photos(process_engine(settings, stills=True), paths, gate, None, settings)
    for result, path, upload in zip(results, paths, uploads, strict=True):
        result.source = upload.name
        if result.reason:
            result.reason = result.reason.replace(str(path), upload.name)
    return results


def enrol_uploads(
    db: Session,
    ctx: Context,
    watchlist_name: str,
    person: str,
    display_name: str,
    category: str,
    reason: str,
    legal_basis: str,
    uploads: Sequence[Upload],
) -> dict[str, Any]:
    existing(db, watchlist_name)  # before any photo is decoded
    check_reference_id(person)
    details = PersonDetails(
        reference_id=person, display_name=display_name, category=category, reason=reason, legal_basis=legal_basis
    )
    enrolled = enrol_person(db, ctx, watchlist_name, details, analyse_uploads(ctx.settings, uploads))
    return {
        "watchlist": watchlist_name,
        "person": enrolled.reference_id,
        "display_name": enrolled.display_name,
        "images": len({image.sha256 for image in enrolled.images}),  # photos: a row per model each
        "expires_at": enrolled.expires_at.isoformat(),
    }


# ----- a folder of people (`openlfr watchlist import`) -----


class _DuplicateCache:
    """One duplicate index for the whole import, loaded when the first photo passes, extended per person."""

    def __init__(self) -> None:
        self.index: DuplicateIndex | None = None

    def for_model(self, session: Session, watchlist: Watchlist, model_id: str, now: datetime) -> DuplicateIndex:
        if self.index is None or self.index.model_id != model_id:
            self.index = DuplicateIndex.load(session, watchlist, model_id, now)
        return self.index


def import_folder(
    store: Store,
    ctx: Context,
    watchlist_name: str,
    folder: Path,
    *,
    template: PersonDetails,
    choice: FaceChoice,
    allow_duplicate: bool,
    workers: int,
    listings: Mapping[str, Listing] | None = None,
    now: datetime | None = None,
    on_person: Callable[[ImportRow], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> tuple[list[ImportRow], list[str]]:
    """Enrol every person folder, each in a transaction of its own (with its audit entry), so one refused person
    never stops, or half-writes, the others; people already listed are skipped without being analysed.

    Who each person is comes from ``listings`` (people.csv, by id) or, where it is None, the folder's name;
    ``template`` fills the blanks. A person without a row, a name, a category, a reason or a legal basis is
    refused before their photos are analysed, as is a row without a folder. Returns one row per folder (in name
    order), then one per row without a folder, and the ignored entries."""
    moment = now or utc_now()
    people, ignored = scan_folder(folder)
    if listings is not None:
        ignored = [name for name in ignored if name != PEOPLE_CSV]
    with store.session() as session:
        watchlist = existing(session, watchlist_name)
        listed = set(session.scalars(sa.select(Person.reference_id).where(Person.watchlist_id == watchlist.id)))
    rows: dict[str, ImportRow] = {}
    to_enrol = []
    for person in people:
        try:
            check_reference_id(person.reference_id)  # before its photos are analysed, for nothing
        except EnrolmentRefused as refused:
            reasons = [reason for _, reason in refused.problems]
            rows[person.reference_id] = ImportRow(refused.reference_id, "refused", 0, reasons)
            continue
        details, missing = _listing_details(template, person.reference_id, listings)
        if person.reference_id in listed:
            rows[person.reference_id] = ImportRow(person.reference_id, "skipped", 0, ["already on the list"])
        elif missing:
            rows[person.reference_id] = ImportRow(person.reference_id, "refused", 0, missing)
        elif not person.photos:
            rows[person.reference_id] = ImportRow(person.reference_id, "refused", 0, ["no image files in the folder"])
        else:
            to_enrol.append((person, details))
    folders = {person.reference_id for person in people}
    orphans = [
        ImportRow(escaped(reference_id), "refused", 0, [f"in {PEOPLE_CSV}, but no sub-folder of that name"])
        for reference_id in (listings or {})
        if reference_id not in folders
    ]
    for row in [*rows.values(), *orphans]:
        if on_person:
            on_person(row)
    if on_start:
        on_start(len(to_enrol))
    cache = _DuplicateCache()
    analysed = analyse_folders(ctx.settings, [person for person, _ in to_enrol], choice, workers)
    for (person, details), results in zip(to_enrol, analysed, strict=True):
        row = _enrol_one(store, ctx, watchlist_name, details, results, cache, allow_duplicate, moment, str(folder))
        rows[person.reference_id] = row
        if on_person:
            on_person(row)
    return [rows[p.reference_id] for p in people] + orphans, ignored


def _listing_details(
    template: PersonDetails, reference_id: str, listings: Mapping[str, Listing] | None
) -> tuple[PersonDetails, list[str]]:
    """One person's details (people.csv's cells, else the whole import's) and what is missing from them."""
    if listings is None:
        listing = Listing(name=reference_id)
    elif reference_id in listings:
        listing = listings[reference_id]
    else:
        return template, [f"no row for this folder in {PEOPLE_CSV}"]
    details = replace(
        template,
        reference_id=reference_id,
        display_name=listing.name,
        category=listing.category or template.category,
        reason=listing.reason or template.reason.strip(),
        legal_basis=listing.legal_basis or template.legal_basis.strip(),
    )
    given = {
        "name": details.display_name,
        "category": details.category,
        "reason": details.reason,
        "legal_basis": details.legal_basis,
    }
    missing = []
    for column, value in given.items():
        if not value:
            flag = "" if column == "name" else f", or --{column.replace('_', '-')} for the whole import"
            missing.append(f"no {column.replace('_', ' ')} (the {column} column of {PEOPLE_CSV}{flag})")
    return details, missing


def _enrol_one(
    store: Store,
    ctx: Context,
    watchlist_name: str,
    details: PersonDetails,
    results: list[PhotoResult],
    cache: _DuplicateCache,
    allow_duplicate: bool,
    now: datetime,
    folder: str,
) -> ImportRow:
    refused = [f"{Path(r.source).name}: {r.reason}" for r in results if not r.accepted]
    if refused:
        return ImportRow(details.reference_id, "refused", 0, refused)
    first = results[0].face
    assert first is not None
    try:
        with store.session() as session:
            duplicates = cache.for_model(session, existing(session, watchlist_name), first.model_id, now)
            enrol_person(
                session,
                ctx,
                watchlist_name,
                details,
                results,
                allow_duplicate=allow_duplicate,
                now=now,
                duplicates=duplicates,
                audit_details={"import": folder},
            )
    except EnrolmentRefused as exc:
        reasons = [f"{Path(source).name}: {reason}" if source else reason for source, reason in exc.problems]
        return ImportRow(details.reference_id, "refused", 0, reasons)
    return ImportRow(details.reference_id, "enrolled", len(results))
