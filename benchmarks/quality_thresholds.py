"""Where the enrolment quality limits come from: each where 1% of LFW's faces would fail it.

Run: .venv/bin/python benchmarks/quality_thresholds.py [--limit N] [--json]
Every LFW image (OPENLFR_TEST_DATA/lfw/images), its portrait subject found by the configured detector
(``bench.lfw.central_face``), quality measured as enrolment measures it (``vision.quality``). Prints the 1st
percentile of the inter-eye distance and of sharpness and the 99th of |yaw| and |pitch|, next to the settings
(``enrol_min_inter_eye_px``, ``enrol_min_sharpness``, ``enrol_max_yaw_deg``, ``enrol_max_pitch_deg``), and the
share of LFW faces each setting refuses.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from rich.progress import track

from openlfr.bench.lfw import central_face
from openlfr.settings import get_settings
from openlfr.vision.engine import build_engine
from openlfr.vision.image_io import load_rgb
from openlfr.vision.providers import provider_line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=0, help="only the first N images (0: all)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    print(provider_line(), file=sys.stderr, flush=True)  # what the figures were measured on
    settings = get_settings()
    images = Path(settings.test_data) / "lfw" / "images"
    paths = sorted(images.glob("*/*.jpg"))[: args.limit or None]
    if not paths:
        print(f"no LFW images under {images}: set OPENLFR_TEST_DATA", file=sys.stderr)
        return 1
    engine = build_engine(settings.model_copy(update={"onnx_threads": 1}))
    rows, missed = [], 0
    for path in track(paths, description="LFW faces", disable=args.json):
        pixels = load_rgb(path, settings.max_image_pixels)
        subject = central_face(engine.detect(pixels), *pixels.shape[:2])
        if subject is None:
            missed += 1
            continue
        (face,) = engine.analyse(pixels, [subject])
        q = face.quality
        rows.append((q.inter_eye_px, q.sharpness, abs(q.yaw_deg), abs(q.pitch_deg)))
    table = np.array(rows)
    limits = (
        ("inter_eye_px", 0, 1, settings.enrol_min_inter_eye_px, "min"),
        ("sharpness", 1, 1, settings.enrol_min_sharpness, "min"),
        ("abs_yaw_deg", 2, 99, settings.enrol_max_yaw_deg, "max"),
        ("abs_pitch_deg", 3, 99, settings.enrol_max_pitch_deg, "max"),
    )
    report: dict[str, object] = {"detector": engine.detector.name, "images": len(paths), "missed": missed}
    for name, column, percentile, setting, kind in limits:
        values = table[:, column]
        refused = values < setting if kind == "min" else values > setting
        report[name] = {
            f"p{percentile}": round(float(np.percentile(values, percentile)), 2),
            "median": round(float(np.median(values)), 2),
            "setting": setting,
            "share_refused_by_setting": round(float(refused.mean()), 4),
        }
    print(json.dumps(report, indent=None if args.json else 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
