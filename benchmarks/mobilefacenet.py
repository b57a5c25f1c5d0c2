"""MobileFaceNet speed: the LiteRT interpreter on the TFLite file against ONNX Runtime on our conversion.

Run: .venv/bin/python benchmarks/mobilefacenet.py [--rounds N]
Both run in this process on the same real face chips (the astronaut, shifted), with 1 and then 2 threads,
interleaved round by round so a busy machine slows both alike; the figure is the median over rounds of the
milliseconds per face. LiteRT's model takes batches of exactly 2. "embedder" is what OpenLFR runs
(``MobileFaceNetEmbedder.raw``: pixel scaling included, one face per call, PRelu rewritten for ONNX Runtime,
see ``openlfr.vision.mobilefacenet``); "run graph batch N" is that graph fed N faces per call; "stored graph"
is the converted graph as cached, one PRelu per activation. Ratio > 1: ONNX Runtime is faster than LiteRT.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import onnx

from openlfr.modelbuild.models import installed_tflite, mobilefacenet_onnx_path
from openlfr.settings import get_settings
from openlfr.vision.mobilefacenet import MobileFaceNetEmbedder, for_onnx_runtime, prepare_chips
from openlfr.vision.onnx_embedder import _session
from openlfr.vision.providers import provider_line


def real_chips(count: int) -> np.ndarray:
    from skimage import data

    from openlfr.settings import Settings
    from openlfr.vision.engine import build_engine

    engine = build_engine(Settings(detector="retinaface", embedder="mobilefacenet"))
    chip = max(engine.faces(np.ascontiguousarray(data.astronaut()), embed=False), key=lambda f: f.score).chip
    return np.stack([np.roll(chip, (i % 7 - 3, i // 7 % 7 - 3), axis=(0, 1)) for i in range(count)])


def litert_runner(threads: int, chips: np.ndarray) -> Callable[[], None]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(installed_tflite(get_settings().cache_dir)), num_threads=threads)
    interpreter.allocate_tensors()
    (source,), (target,) = interpreter.get_input_details(), interpreter.get_output_details()
    batches = np.ascontiguousarray(prepare_chips(chips).transpose(0, 2, 3, 1)).reshape(-1, 2, 112, 112, 3)

    def run() -> None:
        for batch in batches:
            interpreter.set_tensor(source["index"], batch)
            interpreter.invoke()
            interpreter.get_tensor(target["index"])

    return run


def embedder_runner(threads: int, chips: np.ndarray) -> Callable[[], None]:
    embedder = MobileFaceNetEmbedder(mobilefacenet_onnx_path(get_settings().cache_dir), threads)

    def run() -> None:
        embedder.raw(chips)

    return run


def ort_runner(model: onnx.ModelProto, threads: int, chips: np.ndarray, batch: int) -> Callable[[], None]:
    session = _session(model.SerializeToString(), threads)  # the embedder's own session options
    prepared = prepare_chips(chips)
    batches = [prepared[i : i + batch] for i in range(0, len(prepared), batch)]

    def run() -> None:
        for part in batches:
            session.run(None, {"input": part})

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--faces", type=int, default=32)
    args = parser.parse_args()
    print(provider_line(), file=sys.stderr, flush=True)  # what the figures were measured on
    stored = onnx.load(str(mobilefacenet_onnx_path(get_settings().cache_dir)))
    run_graph = for_onnx_runtime(stored)
    chips = real_chips(args.faces)
    figures: dict[str, object] = {"faces_per_round": len(chips), "rounds": args.rounds}
    for threads in (1, 2):
        runners = {
            "litert_batch2": litert_runner(threads, chips),
            "ort_embedder": embedder_runner(threads, chips),
            "ort_run_graph_batch1": ort_runner(run_graph, threads, chips, 1),
            "ort_run_graph_batch2": ort_runner(run_graph, threads, chips, 2),
            "ort_run_graph_batch8": ort_runner(run_graph, threads, chips, 8),
            "ort_stored_graph_batch1": ort_runner(stored, threads, chips, 1),
        }
        times: dict[str, list[float]] = {name: [] for name in runners}
        for run in runners.values():
            run()  # warm-up: first runs allocate
        for _ in range(args.rounds):
            for name, run in runners.items():
                start = time.perf_counter()
                run()
                times[name].append((time.perf_counter() - start) * 1000 / len(chips))
        ms = {name: round(statistics.median(values), 2) for name, values in times.items()}
        base = ms["litert_batch2"]
        figures[f"threads_{threads}"] = {
            "ms_per_face": ms,
            "litert_over_ort_embedder": round(base / ms["ort_embedder"], 2),
            "litert_over_ort_batch2": round(base / ms["ort_run_graph_batch2"], 2),
            "litert_over_ort_stored_graph": round(base / ms["ort_stored_graph_batch1"], 2),
        }
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
