"""LFW View 2: the standard 10-fold verification protocol from ``pairs.txt``.

For each fold the decision threshold is the one that is most accurate on the *other* folds; the reported
accuracy is the mean over held-out folds. Images are embedded once, in worker processes.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from openlfr.errors import OpenLFRError
from openlfr.settings import Settings
from openlfr.vision.engine import FaceEngine, require_models
from openlfr.vision.onnx_embedder import DlibResnetEmbedder
from openlfr.vision.types import Box, Detection


@dataclass(frozen=True)
class Pair:
    fold: int
    first: str  # image key "Name/Name_0001"
    second: str
    same: bool


def lfw_image_key(name: str, number: int) -> str:
    return f"{name}/{name}_{number:04d}"


def read_pairs(pairs_file: Path, max_folds: int | None = None) -> list[Pair]:
    try:
        lines = pairs_file.read_text().split("\n")
    except OSError as exc:
        raise OpenLFRError(f"cannot read {pairs_file}: {exc.strerror}") from exc
    header = lines[0].split()
    if len(header) != 2:
        raise OpenLFRError(f"{pairs_file}: first line should be '<folds> <pairs per fold>'")
    folds, per_fold = int(header[0]), int(header[1])
    rows = [line.split() for line in lines[1:] if line.strip()]
    if len(rows) != folds * per_fold * 2:
        raise OpenLFRError(f"{pairs_file}: expected {folds * per_fold * 2} pairs, found {len(rows)}")
    pairs = []
    for index, row in enumerate(rows):
        fold = index // (2 * per_fold)
        if max_folds is not None and fold >= max_folds:
            break
        if len(row) == 3:
            pairs.append(Pair(fold, lfw_image_key(row[0], int(row[1])), lfw_image_key(row[0], int(row[2])), True))
        elif len(row) == 4:
            pairs.append(Pair(fold, lfw_image_key(row[0], int(row[1])), lfw_image_key(row[2], int(row[3])), False))
        else:
            raise OpenLFRError(f"{pairs_file}: line {index + 2} is not a pair")
    return pairs


# ----- embedding the images -----

# LFW images are crops centred on one person, the face filling the middle of the frame (70..180 of 250 px).
PORTRAIT_FACE_FRACTION = (0.28, 0.72)
# A detection is the subject when it overlaps that middle box this much; faces at the edges (bystanders) overlap
# it < 0.17 on LFW, the subject >= 0.32 whatever the detector's box size.
MIN_SUBJECT_OVERLAP = 0.25
SUBJECT_RULE = "overlap25"  # names this rule in caches of embeddings: a new rule must not reuse old entries


@dataclass
class EmbeddedImage:
    key: str
    embedding: np.ndarray
    how: str  # "detected", "fallback" (second detector) or "centre" (nothing detected; centre box assumed)


_worker_engine: FaceEngine | None = None


def _init_worker(settings_json: str, fallback: bool) -> None:
    global _worker_engine
    from openlfr.vision.engine import build_engine

    _worker_engine = build_engine(Settings.model_validate_json(settings_json), stills=fallback)


def portrait_face_box(rows: int, cols: int) -> Box:
    """Where a centred portrait's face is expected: the middle of the image."""
    low, high = PORTRAIT_FACE_FRACTION
    return Box(round(low * cols), round(low * rows), round(high * cols), round(high * rows))


def central_face(detections: list[Detection], rows: int, cols: int) -> Detection | None:
    """The detection that is the portrait's subject (overlapping the middle box most), else None.

    Other people often appear at the edges of a portrait, and a detector that misses the subject must not hand
    us a bystander instead.
    """
    middle = portrait_face_box(rows, cols)
    overlaps = [(d.box.iou(middle), d) for d in detections]
    overlap, subject = max(overlaps, key=lambda pair: pair[0], default=(0.0, None))
    return subject if overlap >= MIN_SUBJECT_OVERLAP else None


def choose_subject(engine: FaceEngine, image: np.ndarray) -> tuple[Detection, str]:
    """The main detector's central face; else the fallback detector's; else the middle box (counted undetected)."""
    rows, cols = image.shape[:2]
    subject = central_face(engine.detector.detect(image), rows, cols)
    if subject is not None:
        return subject, "detected"
    if engine.fallback is not None:
        subject = central_face(engine.fallback.detect(image), rows, cols)
        if subject is not None:
            return subject, "fallback"
    return Detection(portrait_face_box(rows, cols), 0.0, "centre"), "centre"


def _embed_batch(args: tuple[Path, list[str]]) -> list[EmbeddedImage]:
    from openlfr.vision.image_io import load_rgb

    images_dir, keys = args
    engine = _worker_engine
    assert engine is not None
    faces, hows = [], []
    for key in keys:
        image = load_rgb(images_dir / f"{key}.jpg", max_pixels=10_000_000)
        subject, how = choose_subject(engine, image)
        faces.append(engine.analyse(image, [subject])[0])
        hows.append(how)
    engine.embed(faces)
    return [
        EmbeddedImage(key, face.embedding if face.embedding is not None else np.zeros(0), how)
        for key, face, how in zip(keys, faces, hows, strict=True)
    ]


def embed_images(
    settings: Settings,
    images_dir: Path,
    keys: list[str],
    workers: int,
    progress: Callable[[int], None] | None = None,
    fallback: bool = True,
) -> dict[str, EmbeddedImage]:
    # A missing model is a one-line error here, not a worker dying in its initializer (BrokenProcessPool).
    require_models(settings, stills=fallback)
    chunk = 32
    batches = [(images_dir, keys[i : i + chunk]) for i in range(0, len(keys), chunk)]
    worker_settings = settings.model_copy(update={"onnx_threads": 1})
    results: dict[str, EmbeddedImage] = {}
    # Fresh interpreters, not forks: a fork of a process that already ran dlib or ONNX Runtime can hang.
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(worker_settings.model_dump_json(), fallback),
    ) as pool:
        for batch in pool.map(_embed_batch, batches):
            for item in batch:
                results[item.key] = item
            if progress:
                progress(len(batch))
    return results


# ----- the protocol -----


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold with the highest accuracy on these pairs (midpoint between neighbouring scores)."""
    order = np.sort(np.unique(scores))
    candidates = np.concatenate([[order[0] - 1e-6], (order[:-1] + order[1:]) / 2, [order[-1] + 1e-6]])
    accuracies = [np.mean((scores >= t) == same) for t in candidates]
    return float(candidates[int(np.argmax(accuracies))])


@dataclass
class VerificationResult:
    accuracy: float
    std: float
    fold_accuracies: list[float]
    thresholds: list[float]
    folds: int
    pairs: int
    extra: dict[str, object] = field(default_factory=dict)


def cross_validate(pairs: list[Pair], scores: np.ndarray) -> VerificationResult:
    folds = np.array([p.fold for p in pairs])
    same = np.array([p.same for p in pairs])
    fold_ids = sorted(set(folds.tolist()))
    if len(fold_ids) == 1:
        # One fold only (a quick subset): cross-validate over ten interleaved parts of it instead.
        folds = np.arange(len(pairs)) % 10
        fold_ids = list(range(10))
    accuracies, thresholds = [], []
    for fold in fold_ids:
        train, test = folds != fold, folds == fold
        threshold = best_threshold(scores[train], same[train])
        accuracies.append(float(np.mean((scores[test] >= threshold) == same[test])))
        thresholds.append(threshold)
    return VerificationResult(
        accuracy=float(np.mean(accuracies)),
        std=float(np.std(accuracies)),
        fold_accuracies=accuracies,
        thresholds=thresholds,
        folds=len(fold_ids),
        pairs=len(pairs),
    )


def pair_scores(pairs: Iterable[Pair], embedded: dict[str, EmbeddedImage]) -> np.ndarray:
    return np.array([float(embedded[p.first].embedding @ embedded[p.second].embedding) for p in pairs])


def sample_chips(engine: FaceEngine, images_dir: Path, keys: list[str]) -> np.ndarray:
    """The embedder's chips of these LFW images' subjects, made in this process (for speed and equality checks)."""
    from openlfr.vision.image_io import load_rgb

    chips = []
    for key in keys:
        image = load_rgb(images_dir / f"{key}.jpg", max_pixels=10_000_000)
        subject, _ = choose_subject(engine, image)
        chips.append(engine.analyse(image, [subject])[0].chip)
    return np.stack(chips)


def time_embedder(engine: FaceEngine, chips: np.ndarray) -> dict[str, float]:
    """Milliseconds per face through the engine's embedder, batched as the engine batches a frame's faces."""
    engine.embedder.embed(chips[:4])  # warm-up: the first run allocates
    start = time.perf_counter()
    for i in range(0, len(chips), 16):
        engine.embedder.embed(chips[i : i + 16])
    return {"ms_per_face_embed": round((time.perf_counter() - start) * 1000 / len(chips), 3)}


def compare_with_dlib(onnx_embedder: DlibResnetEmbedder, chips: np.ndarray) -> dict[str, float]:
    """Our ONNX graph of dlib's ResNet against dlib's own ``compute_face_descriptor`` on the same 150 px chips.

    Only for that model: the comparison means nothing for another embedder (and its chips do not fit dlib's).
    """
    from openlfr.vision.dlib_backend import DlibReferenceEmbedder

    reference = DlibReferenceEmbedder()
    onnx_embedder.raw(chips[:4])
    start = time.perf_counter()
    ours = np.concatenate([onnx_embedder.raw(chips[i : i + 16]) for i in range(0, len(chips), 16)])
    onnx_ms = (time.perf_counter() - start) * 1000 / len(chips)
    start = time.perf_counter()
    theirs = reference.raw(chips)
    dlib_ms = (time.perf_counter() - start) * 1000 / len(chips)
    return {
        "ms_per_face_embed_dlib": round(dlib_ms, 3),
        "speedup_vs_dlib": round(dlib_ms / onnx_ms, 2),
        "max_abs_diff_vs_dlib": float(np.abs(ours - theirs).max()),
        "faces_compared": len(chips),
    }
