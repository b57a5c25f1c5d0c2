"""LFW embeddings cached on disk, so calibration, the identification benchmark and tests embed each image once.

Embedding all 13,233 LFW images takes minutes on two cores; the result depends only on the embedding model,
the detection options and the image file. The cache is one ``.npz`` per (model id, detection options) in
``settings.cache_dir / "lfw-embeddings"``; an entry is reused only while its image file has the same size.
Missing images are embedded (in worker processes) and added; the file is replaced atomically.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from rich.progress import Progress

from openlfr.errors import OpenLFRError
from openlfr.face_models import detector_spec
from openlfr.settings import Settings
from openlfr.vision.engine import model_id_for

Profile = Literal["live", "stills"]
CHECKPOINT_IMAGES = 1024  # the cache file is rewritten after each slice of this many newly embedded images


@dataclass(frozen=True)
class LfwEmbeddings:
    model_id: str
    keys: list[str]  # "Name/Name_0001", in the order asked for
    embeddings: np.ndarray  # (len(keys), D) float32, unit norm
    hows: list[str]  # "detected", "fallback" or "centre"
    newly_embedded: int  # how many were not in the cache


def lfw_identities(images_dir: Path) -> dict[str, list[str]]:
    """Identity name -> its image keys, both sorted (``Name_0001`` before ``Name_0002``)."""
    if not images_dir.is_dir():
        raise OpenLFRError(f"{images_dir}: not a folder (expected LFW's images/ folder)")
    identities: dict[str, list[str]] = {}
    for person in sorted(p for p in images_dir.iterdir() if p.is_dir()):
        keys = sorted(f"{person.name}/{f.stem}" for f in person.glob("*.jpg"))
        if keys:
            identities[person.name] = keys
    if not identities:
        raise OpenLFRError(f"{images_dir}: no <Name>/<Name>_NNNN.jpg images found (LFW layout)")
    return identities


def resolve_lfw(data: Path) -> Path:
    """The images folder of an LFW directory (``DIR/images``), or DIR itself if it holds the identities."""
    if (data / "images").is_dir():
        return data / "images"
    if data.is_dir() and any(child.is_dir() for child in data.iterdir()):
        return data
    raise OpenLFRError(f"{data}: expected an LFW folder with images/<Name>/<Name>_NNNN.jpg")


def _cache_file(settings: Settings, model_id: str, fallback: bool, profile: Profile) -> Path:
    from openlfr.bench.lfw import SUBJECT_RULE

    fallback_name = "mmodfallback" if fallback else "nofallback"
    views = f"{profile}-jitter{settings.stills_jitter}-align{2 if settings.stills_second_alignment else 1}"
    if detector_spec(settings.detector).scaled:
        detection = f"{settings.detector}-x{settings.detector_scale:g}-min{settings.detector_min_score:g}"
    else:
        detection = f"{settings.detector}-up{settings.upsample}"
    options = f"{detection}-{fallback_name}-{SUBJECT_RULE}-{views}"
    slug = re.sub(r"[^A-Za-z0-9_.+-]", "_", model_id)
    digest = hashlib.sha256(f"{model_id}|{options}".encode()).hexdigest()[:10]
    return settings.cache_dir / "lfw-embeddings" / f"{slug}-{options}-{digest}.npz"


def _read_cache(path: Path) -> dict[str, tuple[np.ndarray, str, int]]:
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as stored:
            keys, vectors, hows, sizes = stored["keys"], stored["embeddings"], stored["hows"], stored["sizes"]
    except (OSError, ValueError, KeyError):
        return {}  # a damaged cache is rebuilt, never trusted
    return {str(k): (v, str(h), int(s)) for k, v, h, s in zip(keys, vectors, hows, sizes, strict=True)}


def _write_cache(path: Path, entries: dict[str, tuple[np.ndarray, str, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted(entries)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, suffix=".part.npz")
    os.close(handle)
    try:
        np.savez(
            temp_name,
            keys=np.array(keys),
            embeddings=np.stack([entries[k][0] for k in keys]).astype(np.float32),
            hows=np.array([entries[k][1] for k in keys]),
            sizes=np.array([entries[k][2] for k in keys], dtype=np.int64),
        )
        os.replace(temp_name, path)
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)


def cached_lfw_embeddings(
    settings: Settings,
    images_dir: Path,
    keys: list[str],
    *,
    workers: int = 2,
    fallback: bool = True,
    quiet: bool = False,
    progress: Callable[[int], None] | None = None,
    profile: Profile = "live",
) -> LfwEmbeddings:
    """Embeddings of these LFW images, from the cache where valid, the rest embedded now and cached.

    ``profile`` says whose embeddings these stand for: "live" — a camera's probes, whose only extra view is the
    mirror image — or "stills" — enrolled reference photos, with the stills views of the settings (second
    alignment, jitter). Both are in the same embedding space; matching compares a stills reference with a
    live probe, and calibration and the identification benchmark do the same.
    """
    from openlfr.bench.lfw import embed_images

    if profile == "live":
        settings = settings.model_copy(update={"stills_jitter": 0, "stills_second_alignment": False})
    model_id = model_id_for(settings)
    path = _cache_file(settings, model_id, fallback, profile)
    entries = _read_cache(path)
    sizes = {}
    for key in keys:
        try:
            sizes[key] = (images_dir / f"{key}.jpg").stat().st_size
        except OSError as exc:
            raise OpenLFRError(f"cannot read {images_dir / key}.jpg: {exc.strerror}") from exc
    missing = [k for k in keys if k not in entries or entries[k][2] != sizes[k]]
    if missing:
        with Progress(disable=quiet, transient=True) as bar:
            task = bar.add_task(f"embedding {len(missing)} LFW images (cached for next time)", total=len(missing))

            def advance(n: int) -> None:
                bar.advance(task, n)
                if progress is not None:
                    progress(n)

            # Written after every slice: a long run (all of LFW with dlib's stills views takes hours on two
            # cores) that is stopped keeps what it embedded.
            for start in range(0, len(missing), CHECKPOINT_IMAGES):
                part = missing[start : start + CHECKPOINT_IMAGES]
                fresh = embed_images(settings, images_dir, part, workers, progress=advance, fallback=fallback)
                for key, item in fresh.items():
                    entries[key] = (item.embedding.astype(np.float32), item.how, sizes[key])
                _write_cache(path, entries)
    return LfwEmbeddings(
        model_id=model_id,
        keys=list(keys),
        embeddings=np.stack([entries[k][0] for k in keys]).astype(np.float32) if keys else np.zeros((0, 0), np.float32),
        hows=[entries[k][1] for k in keys],
        newly_embedded=len(missing),
    )
