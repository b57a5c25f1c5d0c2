"""Face engine benchmark: the old engine (dlib HOG) against the new (RetinaFace) in one run.

Run: .venv/bin/python benchmarks/face_engine.py [--json] [--lfw] [--folds N]
Reads the shared data from OPENLFR_TEST_DATA (default ../shared/data). Prints figures, with ratios against the
old engine measured in the same run:

1. **detection on the 1080p clip** (``video/pedestrians_1080p.mp4``, every frame, one ONNX Runtime thread, one
   core): faces found per frame (all, and >= 40 px tall, the faces both engines can follow) and ms per frame.
   The old engine is HOG without upsampling on the luma plane (the live pipeline's); the new is RetinaFace at
   full size on RGB, and at the live pipeline's scale on the picture the detector process makes from the YUV
   planes (``stream.detector.detection_picture``: conversion included).
2. **WIDER recall by face height** (``crowd/wider``): HOG with one upsampling (the old stills default) and
   RetinaFace at the default settings.
3. **embedding**: ms per face embedded. Left to the embedder's benchmark owner; see ``embedding_figures``.
4. **live CPU budget** (``--live``): the live pipeline on every frame of the clip, its whole-picture detection
   booked apart as the detector process would run it (2 frames late), so the CPU one camera needs per second
   of video is known per process whatever else the machine is doing: RetinaFace at half and full size, HOG.
5. **real-time scan** (``--realtime``): ``openlfr scan video/pedestrians_1080p.mp4 --watchlist W --realtime --json``
   as a user runs it (W: the shared gallery, enrolled in a throwaway data directory), once with each detector,
   one after the other in this run: fps, frames decoded / dropped, faces seen, alerts, and the new engine's faces
   seen against the old's (issue 9: 25 fps, 0 dropped, no alert, at least 2.5x the faces).
6. **LFW** (``--lfw``): View 2 accuracy with the default engine (``openlfr bench lfw``; tens of minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import numpy as np

from openlfr.bench.detection import run_detection_recall
from openlfr.settings import Settings, get_settings
from openlfr.stream.detector import detection_picture
from openlfr.stream.evidence import EvidenceRule
from openlfr.stream.frames import YuvFrame
from openlfr.stream.pipeline import CameraPipeline
from openlfr.stream.source import CameraConfig, frame_format, to_i420_frame, write_i420
from openlfr.stream.watchlists import gallery_from_images, people_in_folder
from openlfr.vision.engine import build_detector, build_engine
from openlfr.vision.providers import provider_line
from openlfr.vision.retinaface import RetinaFaceDetector
from openlfr.vision.types import FaceDetector

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.streamkit import LateDetector  # noqa: E402  (the repository's test kit, as benchmarks/event_streams.py)

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


def live_budget(settings: Settings, data: Path, frames: list[YuvFrame]) -> list[dict[str, Any]]:
    """CPU per second of video of the analysis and the detector process, per detector setting (one thread)."""
    one_thread = settings.model_copy(update={"onnx_threads": 1})
    engine = build_engine(one_thread)
    gallery = gallery_from_images(engine, people_in_folder(data / "stills" / "gallery"), name="gallery").gallery
    fps = 25.0
    rows = []
    for name, scale in (("retinaface", None), ("retinaface", 1.0), ("hog", None)):
        chosen = one_thread.model_copy(update={"detector": name})
        config = chosen.stream.model_copy(update={"detect_scale": scale})
        local = build_detector(chosen, upsample=config.detect_upsample, scale=1.0)
        pipeline = CameraPipeline(
            CameraConfig("bench", str(data / CLIP)), config, build_engine(chosen), local, gallery, EvidenceRule(1.0)
        )
        remote = LateDetector(build_detector(chosen, upsample=config.detect_upsample, scale=1.0))
        pipeline.remote = remote
        start = time.process_time()
        for index, frame in enumerate(frames):
            pipeline.process(frame, index / fps, time.monotonic())
        pipeline.finish()
        analysis_s = time.process_time() - start - remote.cpu_s
        counters = pipeline.counters
        searches = max(counters.detect_frames, 1)
        detector_ms = 1000.0 * remote.cpu_s / searches
        rows.append(
            {
                "detector": name,
                "scale": config.detect_scale or local.live_scale,
                "analysis_ms_per_frame": round(1000.0 * analysis_s / len(frames), 1),
                "analysis_cores": round(analysis_s / (len(frames) / fps), 2),
                "detector_ms_per_search": round(detector_ms, 1),
                # searches are asked for five times a second; a detector slower than that is busy all the time
                "detector_cores": round(min(1.0, detector_ms / 1000.0 / config.detect_interval_s), 2),
                "faces_seen": counters.faces_seen,
                "tracks": counters.tracks,
                "embeddings": counters.embeddings,
            }
        )
    return rows


def decode_cores(path: Path) -> float:
    """CPU of decoding the clip into I420 buffers, per second of video (the capture side of a camera)."""
    start = time.process_time()
    frames = clip_frames(path)
    return round((time.process_time() - start) / (len(frames) / 25.0), 2)


def realtime_scans(data: Path, repeats: int) -> dict[str, Any]:
    """`openlfr scan --realtime --json` on the 1080p clip with each detector, against the gallery watchlist."""
    openlfr = [sys.executable, "-m", "openlfr"]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="openlfr-bench-") as home:
        env = {**os.environ, "OPENLFR_DATA_DIR": home}
        env.pop("OPENLFR_DETECTOR", None)

        def run(*args: str, detector: str | None = None) -> str:
            extra = {"OPENLFR_DETECTOR": detector} if detector else {}
            done = subprocess.run(
                [*openlfr, *args], env={**env, **extra}, capture_output=True, text=True, timeout=600, check=False
            )
            if done.returncode not in (0, 1):
                raise RuntimeError(f"openlfr {' '.join(args)} failed: {done.stderr.strip()[-400:]}")
            return done.stdout

        run("watchlist", "create", "W")
        run(
            "watchlist", "import", "W", str(data / "stills" / "gallery"), "--names-from", "folder",
            "--category", "other", "--reason", "benchmark gallery",
            "--legal-basis", "public test photos", "--expires", "1d", "--face", "largest",
        )  # fmt: skip
        for attempt in range(repeats):
            for detector in ("retinaface", "hog"):
                out = run("scan", str(data / CLIP), "--watchlist", "W", "--realtime", "--json", detector=detector)
                lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
                camera = next(line for line in lines if line.get("type") == "camera")
                summary = next(line for line in lines if line.get("type") == "summary")
                rows.append(
                    {
                        "detector": detector,
                        "attempt": attempt + 1,
                        "fps": summary["fps"],
                        **{key: camera[key] for key in ("decoded", "dropped", "processed", "faces_seen", "alerts")},
                        "latency_ms_p95": summary["latency_ms_p95"],
                    }
                )
    new = [r for r in rows if r["detector"] == "retinaface"]
    old = [r for r in rows if r["detector"] == "hog"]
    ratios = [n["faces_seen"] / max(o["faces_seen"], 1) for n, o in zip(new, old, strict=True)]
    return {"rows": rows, "faces_seen_vs_hog": [round(r, 2) for r in ratios]}


def embedding_figures(settings: Settings, data: Path) -> dict[str, Any] | None:
    """ms per face embedded, old embedder against new: to be filled in by the embedder's owner (issue 9)."""
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--live", action="store_true", help="also the live pipeline's CPU budget per detector")
    parser.add_argument("--realtime", action="store_true", help="also `openlfr scan --realtime` with each detector")
    parser.add_argument("--repeats", type=int, default=1, help="--realtime: scans per detector")
    parser.add_argument("--lfw", action="store_true", help="also run LFW View 2 with the default engine (slow)")
    parser.add_argument("--folds", type=int, default=10)
    args = parser.parse_args()
    print(provider_line(), file=sys.stderr, flush=True)  # what the figures were measured on
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
    if args.live:
        report["live_budget"] = {
            "decode_cores": decode_cores(data / CLIP),
            "rows": live_budget(settings, data, clip_frames(data / CLIP)),
        }
    if args.realtime:
        report["realtime_scan"] = realtime_scans(data, max(1, args.repeats))
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
    if "live_budget" in report:
        print(f"Live CPU budget per second of video (decoding: {report['live_budget']['decode_cores']} core):")
        for row in report["live_budget"]["rows"]:
            print("  " + json.dumps(row))
    if "realtime_scan" in report:
        print(f"openlfr scan {CLIP} --realtime --json (gallery watchlist):")
        for row in report["realtime_scan"]["rows"]:
            print("  " + json.dumps(row))
        print("  faces seen, RetinaFace against HOG:", report["realtime_scan"]["faces_seen_vs_hog"])
    if report["embedding"] is not None:
        print("Embedding:", json.dumps(report["embedding"]))
    if "lfw" in report:
        print("LFW View 2:", json.dumps(report["lfw"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
