"""Enrolment speed, with the baselines measured in the same run:

1. folder import of N LFW people: one worker process vs two (the default), people and photos per second;
2. detection on large reference photos (the shared stills, up to 2048 px): at full size vs on a copy scaled to
   ``OPENLFR_ENROL_DETECT_MAX_SIDE`` (1280 px) with the face then analysed at full size — the time, and whether
   the enrolled embedding is the same (cosine between the two paths).

    .venv/bin/python benchmarks/enrolment.py [--people 60]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from openlfr.enrolment.gate import QualityGate
from openlfr.enrolment.photos import analyse_photo
from openlfr.enrolment.service import PersonDetails, create_watchlist
from openlfr.services.context import Context
from openlfr.services.enrolment import import_folder
from openlfr.settings import Settings
from openlfr.store import open_store
from openlfr.vision.engine import build_engine
from openlfr.vision.providers import provider_line

DATA = Path(os.environ.get("OPENLFR_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def person_folders(lfw_images: Path, people: int, root: Path) -> int:
    """Symlinked folders (no copies of the data) for the first ``people`` LFW identities, up to 2 photos each."""
    photos = 0
    for identity in sorted(p for p in lfw_images.iterdir() if p.is_dir())[:people]:
        (root / identity.name).mkdir()
        for image in sorted(identity.glob("*.jpg"))[:2]:
            (root / identity.name / image.name).symlink_to(image)
            photos += 1
    return photos


def time_import(folder: Path, workers: int, work: Path) -> tuple[float, int, int]:
    settings = Settings(data_dir=work / f"data-{workers}")
    store = open_store(settings)
    now = datetime.now(UTC)
    with store.session() as session:
        create_watchlist(session, "bench", "", "bench", now)
    start = time.perf_counter()
    rows, _ = import_folder(
        store,
        Context(settings, b"bench" * 8, "bench", "cli"),
        "bench",
        folder,
        template=PersonDetails("", category="other", reason="a test import", legal_basis="none: test photos"),
        choice=None,
        allow_duplicate=False,
        now=now,
        workers=workers,
    )
    elapsed = time.perf_counter() - start
    store.close()
    enrolled = sum(r.status == "enrolled" for r in rows)
    refused = sum(r.status == "refused" for r in rows)
    return elapsed, enrolled, refused


def bench_import(people: int) -> None:
    lfw = DATA / "lfw" / "images"
    if not lfw.is_dir():
        print(f"import: skipped, no LFW images at {lfw}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = work / "people"
        folder.mkdir()
        photos = person_folders(lfw, people, folder)
        results = {workers: time_import(folder, workers, work) for workers in (1, 2)}
    for workers, (elapsed, enrolled, refused) in results.items():
        print(
            f"import {people} people / {photos} photos, workers={workers}: {elapsed:.1f} s, "
            f"{people / elapsed:.2f} people/s, {photos / elapsed:.2f} photos/s ({enrolled} enrolled, {refused} refused)"
        )
    print(f"import speed-up, 2 workers vs 1 (same run): {results[1][0] / results[2][0]:.2f}x")


def bench_detect_scaling() -> None:
    stills = sorted((DATA / "stills").rglob("*.*"))
    stills = [p for p in stills if p.suffix.lower() in {".jpg", ".jpeg", ".png"}]
    if not stills:
        print("detect scaling: skipped, no stills")
        return
    settings = Settings()
    engine = build_engine(settings, stills=True)
    gate = QualityGate(0, 0, 90, 90)  # measure every face, refuse none
    full_time = scaled_time = 0.0
    cosines = []
    for path in stills:
        started = time.perf_counter()
        full = analyse_photo(engine, path, gate, "largest", max_pixels=settings.max_image_pixels, detect_max_side=10**6)
        full_time += time.perf_counter() - started
        started = time.perf_counter()
        scaled = analyse_photo(
            engine,
            path,
            gate,
            "largest",
            max_pixels=settings.max_image_pixels,
            detect_max_side=settings.enrol_detect_max_side,
        )
        scaled_time += time.perf_counter() - started
        if full.face is not None and scaled.face is not None:
            cosines.append(float(full.face.embedding @ scaled.face.embedding))
    print(
        f"detect on {len(stills)} stills: full size {full_time:.2f} s, scaled to {settings.enrol_detect_max_side} px "
        f"{scaled_time:.2f} s, ratio {full_time / scaled_time:.2f}x; faces enrolled by both: {len(cosines)}, "
        f"cosine full vs scaled min {min(cosines):.4f} mean {np.mean(cosines):.4f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=60)
    args = parser.parse_args()
    print(provider_line(), file=sys.stderr, flush=True)  # what the figures were measured on
    bench_detect_scaling()
    bench_import(args.people)
    return 0


if __name__ == "__main__":
    sys.exit(main())
