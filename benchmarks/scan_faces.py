"""Faces seen by ``openlfr scan`` of the pedestrians clip alone: this tree against an earlier commit, in one run.

Issue 21 asked for less work per camera *with the same faces*: whatever a cut saves, one camera alone must not
see fewer faces than before it. This runs the same thing on both trees, interleaved: the shared gallery enrolled
into a fresh data directory (``watchlist create`` + ``watchlist import``), then ``openlfr scan
pedestrians_1080p.mp4 --watchlist gallery --json``, as fast as possible (every frame analysed: the figure does
not depend on the machine's load) and ``--realtime`` (paced as live, one camera: the figure a deployment sees).
It prints, per tree and mode, faces seen, tracks, embeddings, frames and alerts, and the ratio of faces seen to
the earlier commit's.

The earlier tree is checked out with ``git worktree`` into a temporary folder and run by this virtual
environment's Python with ``PYTHONPATH`` pointing at it (so it uses the same packages and model files), then
removed.

    .venv/bin/python benchmarks/scan_faces.py [--against d0c1818] [--repeat 2] [--loop 1] [--json]

``d0c1818`` is the commit the issue was measured on (before any of its cuts).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from cameras import looped

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = Path(os.environ.get("OPENLFR_TEST_DATA", REPO.parent / "shared" / "data"))
PEDESTRIANS = DATA / "video" / "pedestrians_1080p.mp4"
GALLERY = DATA / "stills" / "gallery"
MODES = {"as fast as possible": [], "realtime": ["--realtime"]}
FIGURES = ("faces_seen", "tracks", "frames", "alerts")


def openlfr(tree: Path, data_dir: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "OPENLFR_DATA_DIR": str(data_dir)}
    env.pop("OPENLFR_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "openlfr", *args], env=env, capture_output=True, text=True, check=False, cwd=tree
    )
    if done.returncode != 0:
        raise SystemExit(f"openlfr {' '.join(args[:2])} failed in {tree}:\n{done.stderr[-2000:]}")
    return done


def enrolled(tree: Path, folder: Path) -> Path:
    """A fresh data directory with the shared gallery as the watchlist ``gallery``."""
    data_dir = folder / "data"
    listing = ["--names-from", "folder", "--category", "other", "--reason", "benchmark", "--legal-basis", "test"]
    openlfr(tree, data_dir, ["watchlist", "create", "gallery"])
    openlfr(tree, data_dir, ["watchlist", "import", "gallery", str(GALLERY), *listing])
    return data_dir


def scan(tree: Path, data_dir: Path, clip: Path, mode: list[str]) -> dict[str, Any]:
    done = openlfr(tree, data_dir, ["scan", str(clip), "--watchlist", "gallery", "--json", *mode])
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip().startswith("{")]
    summary = next(line for line in reversed(lines) if line.get("type") == "summary")
    camera = next((line for line in lines if line.get("type") == "camera"), {})
    return {**{k: summary[k] for k in FIGURES}, "embeddings": camera.get("embeddings")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", default="d0c1818", help="the earlier commit (default: before issue 21's cuts)")
    parser.add_argument("--repeat", type=int, default=2, help="scans per tree and mode, interleaved")
    parser.add_argument("--loop", type=int, default=1, help="plays of the clip in a row (more faces, less noise)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    for needed in (PEDESTRIANS, GALLERY):
        if not needed.exists():
            raise SystemExit(f"{needed} is missing: set OPENLFR_TEST_DATA to the shared data folder")
    with tempfile.TemporaryDirectory(prefix="openlfr-scan-faces-") as folder:
        earlier = Path(folder) / "earlier"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(earlier), args.against],
            check=True,
            capture_output=True,
        )
        clip = looped(PEDESTRIANS, args.loop, None, Path(folder)) if args.loop > 1 else PEDESTRIANS
        try:
            trees = {args.against: earlier, "this tree": REPO}
            data = {name: enrolled(tree, Path(folder) / name.replace(" ", "-")) for name, tree in trees.items()}
            runs: dict[str, dict[str, list[dict[str, Any]]]] = {n: {m: [] for m in MODES} for n in trees}
            for _ in range(args.repeat):
                for mode, flags in MODES.items():
                    for name, tree in trees.items():
                        runs[name][mode].append(scan(tree, data[name], clip, flags))
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(earlier)], check=False)
    report: dict[str, Any] = {"against": args.against, "repeat": args.repeat, "loop": args.loop, "modes": {}}
    for mode in MODES:
        medians = {
            name: {k: statistics.median(r[k] or 0 for r in runs[name][mode]) for k in (*FIGURES, "embeddings")}
            for name in trees
        }
        before, now = medians[args.against]["faces_seen"], medians["this tree"]["faces_seen"]
        report["modes"][mode] = {
            "median": medians,
            "runs": {name: runs[name][mode] for name in trees},
            "faces_ratio": round(now / before, 3) if before else None,
        }
    if args.json:
        print(json.dumps(report))
        return 0
    for mode, entry in report["modes"].items():
        plays = f", played {args.loop} times" if args.loop > 1 else ""
        print(f"\n== scan of the pedestrians clip alone{plays}, {mode} (median of {args.repeat})")
        print(f"{'tree':12} {'faces seen':>10} {'tracks':>7} {'embeddings':>11} {'frames':>7} {'alerts':>7}")
        for name, figures in entry["median"].items():
            print(
                f"{name:12} {figures['faces_seen']:>10g} {figures['tracks']:>7g} {figures['embeddings']:>11g} "
                f"{figures['frames']:>7g} {figures['alerts']:>7g}"
            )
        print(f"faces seen, this tree / {args.against}: {entry['faces_ratio']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
