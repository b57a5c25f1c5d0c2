"""Live pipeline speed on the shared clips, against the naive pipeline measured in the same run.

The naive pipeline is face_recognition's webcam example: every frame converted to RGB, every face detected,
analysed and embedded, every embedding compared with the watchlist (same detector, same embedder, same
watchlist, one core). Ours tracks faces between whole-picture detections and embeds a few looks per track
(``openlfr/stream/pipeline.py`` says what runs on which frame).

For each clip:

1. **as fast as possible** (one core, in this process, every frame analysed): frames/s and faces/s of both,
   embeddings computed, and the ratio;
2. **real time** (``scan --realtime``'s machinery: paced capture, one analysis process, alerts committed to a
   SQLite database): frames decoded, analysed and dropped, frame latency, frame-to-alert latency, and the CPU
   the analysis used per second of video (what "keeping up" needs, whatever else the machine is doing).

    .venv/bin/python benchmarks/pipeline.py [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

from openlfr.alerts.database import AlertDatabase
from openlfr.settings import Settings
from openlfr.store.db import open_store
from openlfr.stream.evidence import EvidenceRule
from openlfr.stream.frames import YuvFrame
from openlfr.stream.pipeline import AlertFound, CameraPipeline
from openlfr.stream.runner import PipelineRunner, RunnerOptions
from openlfr.stream.source import CameraConfig, Capture
from openlfr.stream.watchlists import LiveWatchlist, gallery_from_images, people_in_folder
from openlfr.vision.engine import FaceEngine, build_detector, build_engine
from openlfr.vision.providers import provider_line
from openlfr.watchlist.calibration import choose_threshold, load_calibration

DATA = Path(os.environ.get("OPENLFR_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
TARGET_FPIR = 1e-3  # the scan's default


@dataclass
class Pass:
    frames: int = 0
    faces: int = 0
    embeddings: int = 0
    alerts: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    frame_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "fps": round(self.frames / self.seconds, 2),
            "cpu_ms_per_frame": round(self.cpu_seconds * 1000.0 / self.frames, 1),
            "faces": self.faces,
            "faces_per_s": round(self.faces / self.seconds, 2),
            "embeddings": self.embeddings,
            "alerts": len(self.alerts),
            "people_alerted": sorted(set(self.alerts)),
            "frame_ms_p50": round(float(np.percentile(self.frame_ms, 50)), 1),
            "frame_ms_p95": round(float(np.percentile(self.frame_ms, 95)), 1),
        }


def watchlist_for(clip: str, engine: FaceEngine) -> LiveWatchlist:
    people = people_in_folder(DATA / "stills" / "gallery")
    if clip.startswith("short_hamilton"):
        people["alex_lacamoire"] = [DATA / "stills" / "alex-lacamoire.png", *people["alex_lacamoire"]]
        people["lin-manuel-miranda"] = [DATA / "stills" / "lin-manuel-miranda.png"]
    return gallery_from_images(engine, people, name=clip)


def naive_pass(path: Path, engine: FaceEngine, watchlist: LiveWatchlist, threshold: float) -> Pass:
    """Every face of every frame: RGB conversion, detection, landmarks, chip, embedding, search."""
    result = Pass()
    started, cpu = time.perf_counter(), time.process_time()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            t = time.perf_counter()
            faces = engine.faces(frame.to_ndarray(format="rgb24"))
            if faces:
                answers = watchlist.gallery.search(np.stack([f.embedding for f in faces]), 5)
                result.alerts += [str(a[0].person_id) for a in answers if a and a[0].score >= threshold]
            result.frame_ms.append((time.perf_counter() - t) * 1000.0)
            result.frames += 1
            result.faces += len(faces)
            result.embeddings += len(faces)
    result.seconds, result.cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    return result


def our_pass(path: Path, engine: FaceEngine, watchlist: LiveWatchlist, threshold: float, settings: Settings) -> Pass:
    camera = CameraConfig("bench", str(path))
    pipeline = CameraPipeline(
        camera,
        settings.stream,
        engine,
        build_detector(settings, upsample=settings.stream.detect_upsample, scale=1.0, threads=1),
        watchlist.gallery,
        EvidenceRule(threshold, settings.stream.evidence_k, settings.stream.evidence_n),
    )
    result = Pass()
    buffer = None
    started, cpu = time.perf_counter(), time.process_time()
    for captured in Capture(camera).frames():
        # not openlfr.stream.source.yuv_frames: the frame's time must include the copy into the buffer (as the
        # naive pass's includes its RGB conversion) and exclude decoding
        t = time.perf_counter()
        if buffer is None or buffer.size != captured.format.nbytes:
            buffer = np.empty(captured.format.nbytes, np.uint8)
        captured.write_i420(buffer)
        out = pipeline.process(YuvFrame(buffer, captured.format), captured.clock, captured.arrival)
        result.alerts += [str(a.person_id) for a in out.alerts]
        result.frame_ms.append((time.perf_counter() - t) * 1000.0)
    pipeline.finish()
    result.seconds, result.cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    result.frames = pipeline.counters.processed
    result.faces = pipeline.counters.faces_seen
    result.embeddings = pipeline.counters.embeddings
    return result


def realtime_pass(
    path: Path, watchlist: LiveWatchlist, threshold: float, settings: Settings, workdir: Path
) -> dict[str, Any]:
    """The scan's machinery in real time; alerts committed to a SQLite database before they count."""
    store = open_store(Settings(data_dir=workdir))
    database = AlertDatabase(store)
    alert_ms: list[float] = []
    people: list[str] = []

    def on_alert(found: AlertFound) -> None:
        record = database.commit(found, watchlist_name=watchlist.name, names=watchlist.names)
        alert_ms.append(record.latency_ms or 0.0)
        people.append(record.person_ref)

    runner = PipelineRunner(
        [CameraConfig("bench", str(path))],
        settings,
        watchlist.gallery,
        EvidenceRule(threshold, settings.stream.evidence_k, settings.stream.evidence_n),
        on_alert=on_alert,
        options=RunnerOptions(realtime=True, slots=settings.stream.queue_frames),
    )
    parent_cpu = time.process_time()
    summary = runner.run()
    parent_cpu = time.process_time() - parent_cpu
    store.close()
    state = summary.cameras["bench"]
    counters = state.counters
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        video_s = float(stream.frames / stream.average_rate) if stream.frames and stream.average_rate else 0.0
    return {
        "decoded": counters.decoded,
        "analysed": counters.processed,
        "dropped": counters.dropped,
        "detect_frames": counters.detect_frames,
        "faces": counters.faces_seen,
        "tracks": counters.tracks,
        "embeddings": counters.embeddings,
        "wall_s": round(summary.elapsed_s, 2),
        "video_s": round(video_s, 2),
        "frame_latency_ms_p50": summary.line()["latency_ms_p50"],
        "frame_latency_ms_p95": summary.line()["latency_ms_p95"],
        "alert_latency_ms": [round(v, 1) for v in alert_ms],
        "people_alerted": people,
        "analysis_cpu_per_video_s": round(state.analysis_cpu_s / video_s, 2) if video_s else None,
        "capture_process_cpu_per_video_s": round(parent_cpu / video_s, 2) if video_s else None,
        "error": state.error,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="real-time runs per clip (alert latencies pooled)")
    parser.add_argument("--clips", nargs="*", default=["pedestrians_1080p.mp4", "short_hamilton_clip.mp4"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    print(provider_line(), file=sys.stderr, flush=True)  # what the figures were measured on
    settings = Settings()
    stills_engine = build_engine(settings, stills=True)
    # The naive pipeline gets the same detector as ours (the configured one, at the live pipeline's scale or
    # upsampling) so the ratio measures the design. Both on one ONNX thread, as a camera's analysis process runs
    # (the figures are per core).
    live_scale = settings.stream.detect_scale or build_detector(settings).live_scale
    video_engine = build_engine(
        Settings(upsample=settings.stream.detect_upsample, detector_scale=live_scale, onnx_threads=1)
    )
    table = load_calibration(video_engine.model_id)
    report: dict[str, Any] = {"load_average": os.getloadavg()[0], "clips": {}}
    for clip in args.clips:
        path = DATA / "video" / clip
        watchlist = watchlist_for(clip, stills_engine)
        threshold = choose_threshold(table, watchlist.size, target_fpir=TARGET_FPIR).threshold
        naive = naive_pass(path, video_engine, watchlist, threshold)
        ours = our_pass(path, video_engine, watchlist, threshold, settings)
        realtime = []
        for run in range(args.repeat):
            with tempfile.TemporaryDirectory() as work:
                realtime.append(realtime_pass(path, watchlist, threshold, settings, Path(work) / f"run{run}"))
        alert_ms = [v for r in realtime for v in r["alert_latency_ms"]]
        entry = {
            "threshold": round(threshold, 4),
            "watchlist_references": watchlist.size,
            "naive": naive.summary(),
            "ours": ours.summary(),
            "fps_ratio": round((ours.frames / ours.seconds) / (naive.frames / naive.seconds), 2),
            "embedding_ratio": round(naive.embeddings / max(ours.embeddings, 1), 1),
            "realtime": realtime,
            "alert_latency_ms_p50": round(statistics.median(alert_ms), 1) if alert_ms else None,
            "alert_latency_ms_p95": round(float(np.percentile(alert_ms, 95)), 1) if alert_ms else None,
            "naive_alert_latency_ms_p95_if_it_kept_up": naive.summary()["frame_ms_p95"],
        }
        report["clips"][clip] = entry
        if not args.json:
            print_entry(clip, entry)
    if args.json:
        print(json.dumps(report))


def print_entry(clip: str, entry: dict[str, Any]) -> None:
    naive, ours = entry["naive"], entry["ours"]
    print(f"\n== {clip} (threshold {entry['threshold']}, {entry['watchlist_references']} references)")
    print(
        f"{'as fast as possible':24} {'frames/s':>9} {'CPU ms/frame':>13} {'faces/s':>9} {'embeddings':>11} "
        f"{'alerts':>7}  frame ms p50/p95"
    )
    for name, row in (("naive (every face)", naive), ("ours (tracked)", ours)):
        print(
            f"{name:24} {row['fps']:>9} {row['cpu_ms_per_frame']:>13} {row['faces_per_s']:>9} {row['embeddings']:>11} "
            f"{row['alerts']:>7}  "
            f"{row['frame_ms_p50']}/{row['frame_ms_p95']}   alerted: {', '.join(row['people_alerted']) or '-'}"
        )
    print(f"ratio: {entry['fps_ratio']}x the frames/s, {entry['embedding_ratio']}x fewer embeddings")
    for index, run in enumerate(entry["realtime"], 1):
        print(
            f"real time #{index}: {run['decoded']} decoded, {run['analysed']} analysed, {run['dropped']} dropped "
            f"in {run['wall_s']} s of {run['video_s']} s; frame latency p50/p95 {run['frame_latency_ms_p50']}/"
            f"{run['frame_latency_ms_p95']} ms; alerts {run['people_alerted']} at {run['alert_latency_ms']} ms; "
            f"analysis CPU {run['analysis_cpu_per_video_s']} s per video second"
        )
    print(
        f"frame-to-alert latency (real time, committed): p50 {entry['alert_latency_ms_p50']} ms, "
        f"p95 {entry['alert_latency_ms_p95']} ms; "
        f"naive p95 per frame {entry['naive_alert_latency_ms_p95_if_it_kept_up']} ms"
    )


if __name__ == "__main__":
    main()
