"""Folder import, the analysis half: one sub-folder per person (its name is their id and display name), photos
inside, analysed (detect, gate, embed) in worker processes, in order. Enrolling each person in a transaction
of their own, with its audit entry, is the application layer's (``openlfr.services.enrolment.import_folder``).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from openlfr.enrolment.gate import FaceChoice, QualityGate
from openlfr.enrolment.photos import IMAGE_SUFFIXES, PhotoResult, analyse_photos
from openlfr.errors import OpenLFRError
from openlfr.settings import Settings
from openlfr.vision.engine import FaceEngine, build_engine


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
    settings = Settings.model_validate_json(settings_json)
    _worker = (build_engine(settings, stills=True, second_opinion=True), QualityGate.from_settings(settings), settings)


def _analyse_in_worker(job: tuple[list[Path], FaceChoice]) -> list[PhotoResult]:
    assert _worker is not None
    engine, gate, settings = _worker
    paths, choice = job
    return analyse_photos(engine, paths, gate, choice, settings)


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
