"""Runs the LFW protocol end to end and returns the figures the CLI prints."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from openlfr.bench.lfw import compare_with_dlib, cross_validate, read_pairs, sample_chips, time_embedder
from openlfr.bench.lfw_cache import cached_lfw_embeddings
from openlfr.errors import OpenLFRError
from openlfr.settings import Settings

SPEED_FACES = 64


def run_lfw(
    settings: Settings, data: Path, folds: int, *, flip: bool, fallback: bool, workers: int, quiet: bool
) -> dict[str, object]:
    """``fallback``: the stills profile (the detector fallback and the stills views), else the live one.

    Embeddings come from the per-model LFW cache (``lfw_cache``), shared with ``bench identify`` and
    ``calibrate``: a second run, or a run after those, embeds nothing.
    """
    from openlfr.vision.engine import build_engine
    from openlfr.vision.onnx_embedder import DlibResnetEmbedder

    pairs_file, images_dir = data / "pairs.txt", data / "images"
    if not pairs_file.is_file() or not images_dir.is_dir():
        raise OpenLFRError(f"{data}: expected pairs.txt and an images/ folder (LFW)")
    pairs = read_pairs(pairs_file, max_folds=folds)
    keys = sorted({p.first for p in pairs} | {p.second for p in pairs})
    missing = [k for k in keys if not (images_dir / f"{k}.jpg").is_file()]
    if missing:
        raise OpenLFRError(f"{len(missing)} images named in pairs.txt are missing, e.g. {missing[0]}.jpg")

    run_settings = settings.model_copy(update={"flip_average": flip})
    # Built here first: a model file missing from the cache is one clear error, not one per worker.
    engine = build_engine(run_settings, stills=fallback)
    start = time.perf_counter()
    embedded = cached_lfw_embeddings(
        run_settings,
        images_dir,
        keys,
        workers=workers,
        fallback=fallback,
        quiet=quiet,
        profile="stills" if fallback else "live",
    )
    elapsed = time.perf_counter() - start
    index = {key: row for row, key in enumerate(embedded.keys)}
    vectors = embedded.embeddings
    scores = np.array([float(vectors[index[p.first]] @ vectors[index[p.second]]) for p in pairs])
    result = cross_validate(pairs, scores)
    chips = sample_chips(engine, images_dir, keys[:SPEED_FACES])
    figures: dict[str, object] = {
        "accuracy": round(result.accuracy, 5),
        "std": round(result.std, 5),
        "folds": result.folds,
        "pairs": result.pairs,
        "wrong_pairs": round((1 - result.accuracy) * result.pairs),
        "images": len(keys),
        "model_id": embedded.model_id,
        "undetected": embedded.hows.count("centre"),
        "found_by_fallback_detector": embedded.hows.count("fallback"),
        "options": {
            "detector": settings.detector,
            "fallback_detector": engine.fallback.name if fallback and engine.fallback else None,
            "flip_average": flip,
            "jitter": settings.stills_jitter if fallback else 0,
            "second_alignment_68_point": fallback and engine.second_aligner is not None,
        },
        "fold_accuracies": [round(a, 4) for a in result.fold_accuracies],
        "mean_threshold_cosine": round(float(np.mean(result.thresholds)), 4),
        "images_embedded_now": embedded.newly_embedded,
        "seconds_embedding_images": round(elapsed, 1),
        **time_embedder(engine, chips),
    }
    if isinstance(engine.embedder, DlibResnetEmbedder):
        figures.update(compare_with_dlib(engine.embedder, chips))
    return figures
