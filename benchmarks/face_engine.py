"""Face engine benchmark: the old engine (dlib HOG) against the new (RetinaFace) in one run.

Run: .venv/bin/python benchmarks/face_engine.py [--json] [--lfw] [--folds N]
Reads the shared data from OPENLFR_TEST_DATA (default ../shared/data). Prints figures, with ratios against the
old engine measured in the same run:

1. **detection on the 1080p clip** (``video/pedestrians_1080p.mp4``, every frame, one ONNX Runtime thread, one
   core): faces found per frame (all, and >= 40 px tall: the live pipeline ignores smaller ones) and ms per frame.
   The old engine is HOG without upsampling on the luma plane (the live pipeline's); the new is RetinaFace at
   full size on RGB, and at the live pipeline's scale on the picture the detector process makes from the YUV
   planes (``stream.detector.detection_picture``: conversion included).
2. **WIDER recall by face height** (``crowd/wider``): HOG with one upsampling (the old stills default) and
   RetinaFace at the default settings.
3. **embedding**: ms per face embedded. Left to the embedder's benchmark owner; see ``embedding_figures``.
4. **LFW** (``--lfw``): View 2 accuracy with the default engine (``openlfr bench lfw``; tens of minutes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import av
import numpy as np

from openlfr.bench.detection import run_detection_recall
from openlfr.settings import Settings, get_settings
from openlfr.stream.detector import detection_picture
from openlfr.stream.frames import YuvFrame
from openlfr.stream.source import frame_format, to_i420_frame, write_i420
from openlfr.vision.engine import build_detector
from openlfr.vision.retinaface import RetinaFaceDetector
from openlfr.vision.types import FaceDetector

CLIP = Path("video") / "pedestrians_1080p.mp4"
MIN_FACE_PX = 40


def clip_frames(path: Path) -> list[YuvFrame]:
    """Every frame of the clip as I420 (what the live pipeline holds), decoded once for all detectors."""
    frames = []
    with av.open(str(path)) as container:
        for decoded in container.decode(video=0):
            planar = to_i420_frame(decoded, max_pixels=1 << 30)
            fmt = frame_format(planar)
            buffer = np.empty(fmt.nbytes, np.uint8)
            write_i420(planar, buffer)
            frames.append(YuvFrame(buffer, fmt))
    return frames


def detect_on_clip(frames: list[YuvFrame], detector: FaceDetector, factor: float, label: str) -> dict[str, Any]:
    """Faces per frame and ms per frame of one detector on every frame, picture making included."""
    found = tall = 0
    seconds = 0.0
    for frame in frames:
        start = time.perf_counter()
        picture = detection_picture(frame, frame.bounds(), factor, detector.colour)
        detections = detector.detect(picture)
        seconds += time.perf_counter() - start
        found += len(detections)
        tall += sum(d.box.height / factor >= MIN_FACE_PX for d in detections)
    return {
        "engine": label,
        "frames": len(frames),
        "faces_per_frame": round(found / len(frames), 2),
        f"faces_per_frame_ge{MIN_FACE_PX}px": round(tall / len(frames), 2),
        "ms_per_frame": round(1000.0 * seconds / len(frames), 1),
    }


def detection_figures(settings: Settings, data: Path) -> dict[str, Any]:
    one_thread = settings.model_copy(update={"onnx_threads": 1})
    frames = clip_frames(data / CLIP)
    old = detect_on_clip(frames, build_detector(one_thread, "hog", upsample=0), 1.0, "hog up0 (luma)")
    new = detect_on_clip(frames, build_detector(one_thread, "retinaface", scale=1.0), 1.0, "retinaface x1.0 (RGB)")
    live_scale = settings.stream.detect_scale or RetinaFaceDetector.live_scale
    live = detect_on_clip(
        frames, build_detector(one_thread, "retinaface", scale=1.0), live_scale, f"retinaface x{live_scale} (live)"
    )
    for row in (new, live):
        row["faces_vs_hog"] = round(
            row[f"faces_per_frame_ge{MIN_FACE_PX}px"] / max(old[f"faces_per_frame_ge{MIN_FACE_PX}px"], 1e-9), 2
        )
        row["time_vs_hog"] = round(row["ms_per_frame"] / old["ms_per_frame"], 2)
    return {"clip": str(CLIP), "rows": [old, new, live]}


def wider_figures(settings: Settings, data: Path) -> list[dict[str, object]]:
    one_thread = settings.model_copy(update={"onnx_threads": 1})
    wider = data / "crowd" / "wider"
    return [
        run_detection_recall(wider, one_thread, "hog", upsample=1),
        run_detection_recall(wider, one_thread, "retinaface"),
    ]


def embedding_figures(settings: Settings, data: Path) -> dict[str, Any] | None:
    """ms per face embedded, old embedder against new: to be filled in by the embedder's owner (issue 9)."""
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--lfw", action="store_true", help="also run LFW View 2 with the default engine (slow)")
    parser.add_argument("--folds", type=int, default=10)
    args = parser.parse_args()
    settings = get_settings()
    data = Path(settings.test_data)
    if not (data / CLIP).is_file() or not (data / "crowd" / "wider").is_dir():
        print(f"shared data not found at {data}: set OPENLFR_TEST_DATA", file=sys.stderr)
        return 1
    report: dict[str, Any] = {
        "detection_on_clip": detection_figures(settings, data),
        "wider_recall": wider_figures(settings, data),
        "embedding": embedding_figures(settings, data),
    }
    if args.lfw:
        from openlfr.bench.lfw_run import run_lfw

        report["lfw"] = run_lfw(settings, data / "lfw", args.folds, flip=True, fallback=True, workers=2, quiet=True)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"Detection on {CLIP} (every frame, one thread):")
    for row in report["detection_on_clip"]["rows"]:
        print("  " + json.dumps(row))
    print("WIDER recall by face height:")
    for row in report["wider_recall"]:
        print("  " + json.dumps(row))
    if report["embedding"] is not None:
        print("Embedding:", json.dumps(report["embedding"]))
    if "lfw" in report:
        print("LFW View 2:", json.dumps(report["lfw"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
