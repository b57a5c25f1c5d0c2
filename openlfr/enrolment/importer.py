"""Folder import: one sub-folder per person (its name is their id and display name), photos inside.

Photos are analysed (detect, gate, embed) in worker processes, in order; each person is then enrolled in a
transaction of their own, so one refused person never stops, or half-writes, the others. People already on
the list are skipped without being analysed, so a re-run after fixing the refused folders enrols just those.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from openlfr.enrolment.gate import FaceChoice, QualityGate
from openlfr.enrolment.photos import IMAGE_SUFFIXES, PhotoResult, analyse_photo
from openlfr.enrolment.service import DuplicateIndex, EnrolmentRefused, PersonDetails, enrol
from openlfr.errors import OpenLFRError
from openlfr.settings import Settings
from openlfr.store.db import Store
from openlfr.store.models import Person, Watchlist
from openlfr.store.watchlists import get_watchlist
from openlfr.vision.engine import FaceEngine


@dataclass
class PersonFolder:
    reference_id: str
    photos: list[Path]


@dataclass
class ImportRow:
    reference_id: str
    status: str  # "enrolled", "refused" or "skipped"
    photos: int
    reasons: list[str] = field(default_factory=list)


def scan_folder(folder: Path) -> tuple[list[PersonFolder], list[str]]:
    """The person folders (sorted by name) and the names of loose files and other things that were ignored."""
    if not folder.exists():
        raise OpenLFRError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise OpenLFRError(f"{folder}: not a folder (expected one sub-folder per person)")
    people, ignored = [], []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            ignored.append(entry.name)
            continue
        photos = sorted(p for p in entry.iterdir() if _is_photo(p))
        people.append(PersonFolder(entry.name, photos))
    if not people:
        raise OpenLFRError(f"{folder}: no person folders in it (expected one sub-folder per person, photos inside)")
    return people, ignored


def _is_photo(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


# ----- analysing photos, in this process or in workers -----

MIN_PEOPLE_FOR_WORKERS = 16

_worker: tuple[FaceEngine, QualityGate, Settings] | None = None


def _init_worker(settings_json: str) -> None:
    global _worker
    from openlfr.vision.engine import build_engine

    settings = Settings.model_validate_json(settings_json)
    _worker = (build_engine(settings, stills=True), QualityGate.from_settings(settings), settings)


def _analyse_in_worker(job: tuple[list[Path], FaceChoice]) -> list[PhotoResult]:
    assert _worker is not None
    engine, gate, settings = _worker
    paths, choice = job
    return [
        analyse_photo(
            engine,
            path,
            gate,
            choice,
            max_pixels=settings.max_image_pixels,
            detect_max_side=settings.enrol_detect_max_side,
        )
        for path in paths
    ]


def analyse_folders(
    settings: Settings, folders: list[PersonFolder], choice: FaceChoice, workers: int
) -> Iterator[list[PhotoResult]]:
    """Each folder's photo results, in the folders' order."""
    jobs = [(folder.photos, choice) for folder in folders]
    if not jobs:
        return
    # Starting a worker costs a Python start and a face engine (~2 s): not worth it for a handful of people.
    workers = min(workers, len(jobs)) if len(jobs) >= MIN_PEOPLE_FOR_WORKERS else 1
    if workers <= 1:
        _init_worker(settings.model_dump_json())
        yield from map(_analyse_in_worker, jobs)
        return
    worker_settings = settings.model_copy(update={"onnx_threads": 1})
    # Spawned, not forked: a process that has already run ONNX Runtime (a server, a benchmark) would hand a
    # forked child its thread pool's locks mid-use, and the child hangs building its own engine.
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(worker_settings.model_dump_json(),),
    ) as pool:
        yield from pool.map(_analyse_in_worker, jobs)


def import_folder(
    store: Store,
    settings: Settings,
    watchlist_name: str,
    folder: Path,
    *,
    template: PersonDetails,
    choice: FaceChoice,
    allow_duplicate: bool,
    actor: str,
    now: datetime,
    default_expiry: datetime,
    workers: int,
    on_person: Callable[[ImportRow], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    audit: Callable[[Session, Person, list[str]], None] | None = None,
) -> tuple[list[ImportRow], list[str]]:
    """Enrol every person folder; returns one row per folder (in name order) and the ignored entries.

    ``audit`` is called in each enrolled person's transaction (with the person and their photos' sources), so
    the record of the enrolment commits or rolls back with it."""
    people, ignored = scan_folder(folder)
    with store.session() as session:
        watchlist = get_watchlist(session, watchlist_name)
        listed = set(session.scalars(sa.select(Person.reference_id).where(Person.watchlist_id == watchlist.id)))
    rows: dict[str, ImportRow] = {}
    to_enrol = []
    for person in people:
        if person.reference_id in listed:
            rows[person.reference_id] = ImportRow(person.reference_id, "skipped", 0, ["already on the list"])
        elif not person.photos:
            rows[person.reference_id] = ImportRow(person.reference_id, "refused", 0, ["no image files in the folder"])
        else:
            to_enrol.append(person)
    for row in rows.values():
        if on_person:
            on_person(row)
    if on_start:
        on_start(len(to_enrol))

    cache = _DuplicateCache()
    for person, results in zip(to_enrol, analyse_folders(settings, to_enrol, choice, workers), strict=True):
        details = replace(template, reference_id=person.reference_id, display_name=person.reference_id)
        row = _enrol_one(
            store,
            watchlist_name,
            details,
            results,
            cache,
            allow_duplicate=allow_duplicate,
            duplicate_score=settings.enrol_duplicate_score,
            actor=actor,
            now=now,
            default_expiry=default_expiry,
            audit=audit,
        )
        rows[person.reference_id] = row
        if on_person:
            on_person(row)
    return [rows[p.reference_id] for p in people], ignored


class _DuplicateCache:
    """One duplicate index for the whole import, loaded when the first photo passes, extended per person."""

    def __init__(self) -> None:
        self.index: DuplicateIndex | None = None

    def for_model(self, session: Session, watchlist: Watchlist, model_id: str, now: datetime) -> DuplicateIndex:
        if self.index is None or self.index.model_id != model_id:
            self.index = DuplicateIndex.load(session, watchlist, model_id, now)
        return self.index


def _enrol_one(
    store: Store,
    watchlist_name: str,
    details: PersonDetails,
    results: list[PhotoResult],
    cache: _DuplicateCache,
    *,
    allow_duplicate: bool,
    duplicate_score: float,
    actor: str,
    now: datetime,
    default_expiry: datetime,
    audit: Callable[[Session, Person, list[str]], None] | None,
) -> ImportRow:
    refused = [f"{Path(r.source).name}: {r.reason}" for r in results if not r.accepted]
    if refused:
        return ImportRow(details.reference_id, "refused", 0, refused)
    first = results[0].face
    assert first is not None
    try:
        with store.session() as session:
            watchlist = get_watchlist(session, watchlist_name)
            person = enrol(
                session,
                watchlist,
                details,
                results,
                actor=actor,
                now=now,
                default_expiry=default_expiry,
                duplicate_score=duplicate_score,
                allow_duplicate=allow_duplicate,
                duplicates=cache.for_model(session, watchlist, first.model_id, now),
            )
            if audit is not None:
                audit(session, person, [r.source for r in results])
    except EnrolmentRefused as exc:
        reasons = [f"{Path(source).name}: {reason}" if source else reason for source, reason in exc.problems]
        return ImportRow(details.reference_id, "refused", 0, reasons)
    return ImportRow(details.reference_id, "enrolled", len(results))
