"""``openlfr calibrate``: the threshold -> false match rate table of the current embedding model, from LFW."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
from rich.progress import Progress

from openlfr.bench.lfw_cache import cached_lfw_embeddings, lfw_identities, resolve_lfw
from openlfr.settings import Settings
from openlfr.watchlist.calibration import (
    CalibrationTable,
    choose_threshold,
    now_iso,
    user_table_path,
)
from openlfr.watchlist.calibration_build import effective_fraction, table_from_embeddings

SUMMARY_FMRS = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7)
SUMMARY_WATCHLISTS = (1_000, 10_000, 16_000)


def calibrate_lfw(
    settings: Settings, data: Path, *, workers: int = 2, quiet: bool = False, reference_images: int | None = None
) -> CalibrationTable:
    """Every cross-identity pair of every LFW image (175M ordered image pairs, 16.5M pairs of people), each
    compared as a deployment compares: one image as an enrolled reference (stills profile), the other as a
    camera's probe (live profile). With ``reference_images`` N, only each person's first N images serve as
    references (stills views cost ten times a probe's: dlib's take hours on two cores); every pair of people is
    still compared, both ways, each counting once."""
    images_dir = resolve_lfw(data)
    identities = lfw_identities(images_dir)
    keys = [key for name in sorted(identities) for key in identities[name]]
    names = [name for name in sorted(identities) for _ in identities[name]]
    limit = reference_images or max(len(v) for v in identities.values())
    first_n = {key for name in identities for key in identities[name][:limit]}
    rows = np.array([i for i, key in enumerate(keys) if key in first_n], np.int64)
    first_five = {key for name in identities for key in identities[name][:5]}  # probes as bench identify's
    embedded = cached_lfw_embeddings(settings, images_dir, keys, workers=workers, quiet=quiet)
    ref_keys = [keys[i] for i in rows]
    references = cached_lfw_embeddings(settings, images_dir, ref_keys, workers=workers, quiet=quiet, profile="stills")
    with Progress(disable=quiet, transient=True) as bar:
        task = bar.add_task("comparing every pair of different people", total=len(rows))
        table = table_from_embeddings(
            embedded.embeddings,
            names,
            embedded.model_id,
            references=references.embeddings,
            reference_rows=rows,
            source={
                "dataset": "LFW",
                "undetected_images": embedded.hows.count("centre"),
                "reference_images_per_person": reference_images or "all",
                "created_at": now_iso(),
            },
            progress=lambda n: bar.advance(task, n),
        )
    # how far a probe's comparisons with a gallery are from independent: one reference a person, probes live
    probe_rows = [i for i, key in enumerate(keys) if key in first_five]
    fraction = effective_fraction(
        table,
        references.embeddings,
        [names[i] for i in rows],
        embedded.embeddings[probe_rows],
        [names[i] for i in probe_rows],
    )
    return dataclasses.replace(table, effective_fraction=fraction)


def run_calibrate(
    settings: Settings,
    data: Path,
    out: Path | None,
    *,
    workers: int = 2,
    quiet: bool = False,
    reference_images: int | None = None,
) -> dict[str, object]:
    start = time.perf_counter()
    table = calibrate_lfw(settings, data, workers=workers, quiet=quiet, reference_images=reference_images)
    target = out if out is not None else user_table_path(settings.data_dir, table.model_id)
    table.save(target)
    summary: dict[str, object] = {
        "written": str(target),
        "model_id": table.model_id,
        "image_pairs": table.source.get("image_pairs"),
        "identity_pairs": table.source.get("identity_pairs"),
        "resolved_fmr": float(f"{table.resolved_fmr:.3g}"),
        "tail_fit_from_score": None if table.tail is None else table.tail.from_score,
        "effective_fraction": round(table.effective_fraction, 3),
        "seconds": round(time.perf_counter() - start, 1),
    }
    summary["threshold_at_fmr"] = {
        f"{fmr:.0e}": {"threshold": t, "extrapolated": x}
        for fmr in SUMMARY_FMRS
        for t, x in [table.threshold_for_fmr(fmr)]
    }
    # what a deployment would run at for the Met's reported false-alert rate (1 in 33,000 faces)
    summary["threshold_for_1_in_33000"] = {
        f"N={n}": round(choose_threshold(table, n, target_fpir=1 / 33_000).threshold, 4) for n in SUMMARY_WATCHLISTS
    }
    summary["impostor_score_quantiles"] = _quantiles(table)
    return summary


def _quantiles(table: CalibrationTable) -> dict[str, float]:
    """Match scores exceeded by 50%, 10%, 1%, 0.1% of impostor pairs (read off the table)."""
    out = {}
    for share in (0.5, 0.1, 0.01, 0.001):
        index = int(np.flatnonzero(table.fmr >= share)[-1]) if (table.fmr >= share).any() else 0
        out[f"{share:g}"] = float(table.thresholds[index])
    return out
