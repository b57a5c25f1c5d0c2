"""Search benchmark: exact and approximate top-5 latency per probe, recall@1 of the index against exact.

Run: .venv/bin/python benchmarks/search.py [--sizes 16000 1000000] [--nprobe 32 64 128] [--json]

Synthetic unit vectors (128-D, isotropic) stand in for a watchlist of one reference per person. Probes are
half *mated* (a gallery vector moved to cosine 0.93 from it: the 5th percentile of same-person cosines of
dlib's model on LFW, so a hard same-person probe) and half *non-mated* (fresh random vectors). Recall@1 is
the share of probes whose approximate top-1 person equals the exact top-1; mated recall is what decides
alerts (a non-mated probe's best score is far below any threshold, and an index can only miss a reference,
never raise a score). Latency is measured through ``Gallery.search`` (what the pipeline calls): one probe
per call, and a batch of 32 per call divided by 32, on 200 probes; recall on 1,000 mated and 1,000
non-mated probes. The speed ratio is exact / approximate, same run. The index is built once per size
(timed) and searched with several ``nprobe`` values.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

import numpy as np

from openlfr.vision.providers import provider_line
from openlfr.watchlist.search import Gallery, IvfParams

MODEL = "dlib_resnet_v1+flip"


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - start), dim), dtype=np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def mated_probes(rng: np.random.Generator, gallery: np.ndarray, rows: np.ndarray, cosine: float) -> np.ndarray:
    base = gallery[rows]
    noise = rng.standard_normal(base.shape, dtype=np.float32)
    noise -= (noise * base).sum(axis=1, keepdims=True) * base
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    return (cosine * base + np.sqrt(1 - cosine**2) * noise).astype(np.float32)


def per_probe_ms(gallery: Gallery, probes: np.ndarray, exact: bool, batch: int) -> float:
    gallery.search(probes[:batch], k=5, exact=exact)  # warm-up
    start = time.perf_counter()
    for i in range(0, len(probes), batch):
        gallery.search(probes[i : i + batch], k=5, exact=exact)
    return (time.perf_counter() - start) * 1000 / len(probes)


def top1(gallery: Gallery, probes: np.ndarray, exact: bool) -> list[object]:
    return [c[0].person_id if c else None for c in gallery.search(probes, k=5, exact=exact)]


def run_size(
    n: int, dim: int, probes: int, recall_probes: int, nprobes: list[int], mated_cosine: float, seed: int
) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    vectors = unit_rows(rng, n, dim)
    half = probes // 2
    mated_rows = rng.choice(n, recall_probes, replace=False)
    mated = mated_probes(rng, vectors, mated_rows, mated_cosine)
    nonmated = unit_rows(rng, recall_probes, dim)
    timing = np.concatenate([mated[:half], nonmated[: probes - half]])
    ids = np.arange(n).tolist()
    gallery = Gallery.from_arrays(vectors, ids, ids, MODEL, approximate_above=n)
    del vectors

    exact_single = per_probe_ms(gallery, timing[: min(len(timing), 60)], exact=True, batch=1)
    exact_batch = per_probe_ms(gallery, timing, exact=True, batch=32)
    exact_mated, exact_non = top1(gallery, mated, True), top1(gallery, nonmated, True)
    start = time.perf_counter()
    gallery.build_index()
    build_seconds = time.perf_counter() - start
    rows = []
    for nprobe in nprobes:
        gallery.ivf_params = replace(gallery.ivf_params, nprobe=nprobe)
        approx_single = per_probe_ms(gallery, timing, exact=False, batch=1)
        approx_batch = per_probe_ms(gallery, timing, exact=False, batch=32)
        approx_mated, approx_non = top1(gallery, mated, False), top1(gallery, nonmated, False)
        rows.append(
            {
                "gallery": n,
                "dim": dim,
                "index": f"faiss IVFFlat nlist={gallery.ivf_params.cells(n)} nprobe={nprobe}",
                "exact_ms_per_probe_single": round(exact_single, 3),
                "exact_ms_per_probe_batch32": round(exact_batch, 3),
                "approx_ms_per_probe_single": round(approx_single, 3),
                "approx_ms_per_probe_batch32": round(approx_batch, 3),
                "speedup_single": round(exact_single / approx_single, 1),
                "speedup_batch32": round(exact_batch / approx_batch, 1),
                "index_build_seconds": round(build_seconds, 1),
                "recall_at_1_mated": float(np.mean([a == e for a, e in zip(approx_mated, exact_mated, strict=True)])),
                "recall_at_1_nonmated": float(np.mean([a == e for a, e in zip(approx_non, exact_non, strict=True)])),
                "recall_probes": recall_probes,
                "exact_finds_mated_source": float(np.mean(np.array(exact_mated) == mated_rows)),
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[16_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--recall-probes", type=int, default=1000, help="mated and as many non-mated")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[32, IvfParams().nprobe, 128])
    parser.add_argument("--mated-cosine", type=float, default=0.93)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="one JSON object per size")
    args = parser.parse_args()
    print(provider_line(), file=sys.stderr, flush=True)  # what the figures were measured on
    for n in args.sizes:
        rows = run_size(n, args.dim, args.probes, args.recall_probes, args.nprobe, args.mated_cosine, args.seed)
        for result in rows:
            if args.json:
                print(json.dumps(result), flush=True)
                continue
            print(f"--- {n:,} x {args.dim} references, {result['index']}")
            for key, value in result.items():
                print(f"  {key}: {value}")
            print(
                f"  => exact top-5 {result['exact_ms_per_probe_single']} ms/probe (target < 50 at 1M); approximate "
                f"{result['speedup_single']}x faster one probe at a time (target >= 10x), recall@1 mated "
                f"{result['recall_at_1_mated']:.3f} (target >= 0.99)",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
