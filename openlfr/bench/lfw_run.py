"""Runs the LFW protocol end to end and returns the figures the CLI prints."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from rich.progress import Progress

from openlfr.bench.lfw import cross_validate, embed_images, pair_scores, read_pairs, time_embedders
from openlfr.errors import OpenLFRError
from openlfr.settings import Settings

EQUALITY_FACES = 64


def run_lfw(
    settings: Settings, data: Path, folds: int, *, flip: bool, fallback: bool, workers: int, quiet: bool
) -> dict[str, object]:
    pairs_file, images_dir = data / "pairs.txt", data / "images"
    if not pairs_file.is_file() or not images_dir.is_dir():
        raise OpenLFRError(f"{data}: expected pairs.txt and an images/ folder (LFW)")
    pairs = read_pairs(pairs_file, max_folds=folds)
    keys = sorted({p.first for p in pairs} | {p.second for p in pairs})
    missing = [k for k in keys if not (images_dir / f"{k}.jpg").is_file()]
    if missing:
        raise OpenLFRError(f"{len(missing)} images named in pairs.txt are missing, e.g. {missing[0]}.jpg")

    from openlfr.vision.onnx_embedder import resnet_onnx_path

    resnet_onnx_path(settings.cache_dir)  # build once here, not in every worker
    run_settings = settings.model_copy(update={"flip_average": flip})
    if not fallback:
        run_settings = run_settings.model_copy(update={"detector": "hog"})
    start = time.perf_counter()
    with Progress(disable=quiet, transient=True) as progress:
        task = progress.add_task(f"embedding {len(keys)} LFW images", total=len(keys))
        embedded = embed_images(
            run_settings,
            images_dir,
            keys,
            workers,
            progress=lambda n: progress.advance(task, n),
            keep_chips=EQUALITY_FACES,
            fallback=fallback,
        )
    elapsed = time.perf_counter() - start
    result = cross_validate(pairs, pair_scores(pairs, embedded))
    hows = [item.how for item in embedded.values()]
    chips = np.stack([item.chip for item in embedded.values() if item.chip is not None][:EQUALITY_FACES])
    timing = time_embedders(settings, chips)
    return {
        "accuracy": round(result.accuracy, 5),
        "std": round(result.std, 5),
        "folds": result.folds,
        "pairs": result.pairs,
        "images": len(keys),
        "undetected": hows.count("centre"),
        "found_by_fallback_detector": hows.count("fallback"),
        "options": {
            "detector": settings.detector,
            "upsample": settings.upsample,
            "fallback_detector": "mmod" if fallback else None,
            "flip_average": flip,
            "jitter": settings.stills_jitter if fallback else 0,
            "second_alignment_68_point": settings.stills_second_alignment if fallback else False,
        },
        "fold_accuracies": [round(a, 4) for a in result.fold_accuracies],
        "mean_threshold_cosine": round(float(np.mean(result.thresholds)), 4),
        "seconds_embedding_images": round(elapsed, 1),
        **timing,
    }
