"""Detection recall on WIDER FACE images: how many ground-truth faces a detector finds, by face height."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from openlfr.errors import OpenLFRError
from openlfr.settings import Settings
from openlfr.vision.retinaface import RetinaFaceDetector
from openlfr.vision.types import Box

HEIGHT_BANDS = (("lt40", 0, 40), ("40to80", 40, 80), ("gt80", 80, 1_000_000))


@dataclass(frozen=True)
class TruthBox:
    box: Box
    ignored: bool  # WIDER marks some boxes "-": counted in no subset


def read_ground_truth(path: Path) -> dict[str, list[TruthBox]]:
    """``<event>/<name>.jpg``, a count, then ``x y w h <subsets>`` lines; '#' lines are comments."""
    try:
        lines = [line.strip() for line in path.read_text().splitlines()]
    except OSError as exc:
        raise OpenLFRError(f"cannot read {path}: {exc.strerror}") from exc
    lines = [line for line in lines if line and not line.startswith("#")]
    truth: dict[str, list[TruthBox]] = {}
    index = 0
    while index < len(lines):
        name, count = Path(lines[index]).name, int(lines[index + 1])
        boxes = []
        for row in lines[index + 2 : index + 2 + count]:
            x, y, w, h, *subsets = row.split()
            left, top = int(x), int(y)
            boxes.append(TruthBox(Box(left, top, left + int(w), top + int(h)), subsets in ([], ["-"])))
        truth[name] = boxes
        index += 2 + count
    return truth


def match_recall(truth: list[Box], found: list[Box], min_iou: float = 0.5) -> list[bool]:
    """Greedy one-to-one matching, best IoU first: which ground-truth boxes a detection covers."""
    candidates = sorted(
        ((t.iou(f), ti, fi) for ti, t in enumerate(truth) for fi, f in enumerate(found)),
        reverse=True,
    )
    hit = [False] * len(truth)
    used: set[int] = set()
    for iou, ti, fi in candidates:
        if iou < min_iou:
            break
        if not hit[ti] and fi not in used:
            hit[ti] = True
            used.add(fi)
    return hit


def run_detection_recall(
    folder: Path,
    settings: Settings,
    detector_name: str | None = None,
    *,
    upsample: int | None = None,
    scale: float | None = None,
    grey: bool = False,
) -> dict[str, object]:
    """Recall by face height of the detector the settings choose (or ``detector_name``), on every listed image.

    ``upsample`` (dlib) and ``scale`` (RetinaFace) override the settings; ``grey`` searches the luma only, as
    the live pipeline's detection does.
    """
    from openlfr.vision.engine import build_detector
    from openlfr.vision.image_io import load_rgb

    truth = read_ground_truth(folder / "ground_truth.txt")
    detector = build_detector(settings, detector_name, upsample=upsample, scale=scale)
    totals = {band: [0, 0] for band, _, _ in HEIGHT_BANDS}
    seconds = 0.0
    for name, boxes in truth.items():
        image_path = folder / name
        if not image_path.is_file():
            raise OpenLFRError(f"{image_path}: listed in ground_truth.txt but missing")
        image = load_rgb(image_path, max_pixels=50_000_000)
        if grey:
            image = np.asarray(Image.fromarray(image).convert("L"))
        start = time.perf_counter()
        found = [d.box for d in detector.detect(image)]
        seconds += time.perf_counter() - start
        counted = [t.box for t in boxes if not t.ignored]
        for box, hit in zip(counted, match_recall(counted, found), strict=True):
            for band, low, high in HEIGHT_BANDS:
                if low <= box.height < high:
                    totals[band][0] += int(hit)
                    totals[band][1] += 1
    result: dict[str, object] = {"detector": detector.name}
    if isinstance(detector, RetinaFaceDetector):
        result.update({"scale": detector.scale, "min_score": detector.min_score})
    else:
        result["upsample"] = settings.upsample if upsample is None else upsample
    result.update({"grey": grey, "images": len(truth)})
    for band, (hits, count) in totals.items():
        result[f"recall_{band}"] = round(hits / count, 4) if count else None
        result[f"faces_{band}"] = count
    all_hits = sum(h for h, _ in totals.values())
    all_count = sum(c for _, c in totals.values())
    result["recall_all"] = round(all_hits / all_count, 4) if all_count else None
    result["ms_per_image"] = round(1000 * seconds / max(1, len(truth)), 1)
    return result
