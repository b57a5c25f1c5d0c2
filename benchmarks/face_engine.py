"""Face engine benchmark: LFW accuracy (10 folds), ONNX vs dlib embedder speed and equality, detection recall.

Run: .venv/bin/python benchmarks/face_engine.py [--folds N]
Reads the shared data from OPENLFR_TEST_DATA (default ../shared/data). Prints figures; the embedder speed is a
ratio against dlib's own compute_face_descriptor measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from openlfr.bench.detection import run_detection_recall
from openlfr.bench.lfw_run import run_lfw
from openlfr.settings import get_settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--folds", type=int, default=10)
    args = parser.parse_args()
    settings = get_settings()
    data = Path(settings.test_data)
    if not (data / "lfw" / "pairs.txt").is_file():
        print(f"shared data not found at {data}: set OPENLFR_TEST_DATA", file=sys.stderr)
        return 1
    lfw = run_lfw(settings, data / "lfw", args.folds, flip=True, fallback=True, workers=2, quiet=False)
    print("LFW View 2:", json.dumps(lfw, indent=1))
    for detector, upsample in (("hog", 1), ("hog", 2), ("mmod", 1)):
        recall = run_detection_recall(data / "crowd" / "wider", detector, upsample)
        print("WIDER recall by face height:", json.dumps(recall))
    return 0


if __name__ == "__main__":
    sys.exit(main())
