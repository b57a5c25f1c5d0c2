"""CLI start-up benchmark: how long `openlfr --help` (and `openlfr --version`) take, against `python -c pass`.

Run: .venv/bin/python benchmarks/cli_startup.py [--repeats 7] [--json]

Each command runs as a fresh process `--repeats` times, interleaved with the baseline (an interpreter that
imports nothing) so that a busy machine weighs on both alike; the figures are medians of wall time. The target
(issue 19) is `openlfr --help` under 1.5 s; what is left above the baseline is Typer, Rich and the command
modules themselves (tests/test_cli_snags.py checks that none of the heavy libraries is loaded for it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from openlfr.vision.providers import provider_line

OPENLFR = Path(sys.executable).parent / "openlfr"


def wall_time(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    print(provider_line(), file=sys.stderr, flush=True)  # what the figures were measured on
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "openlfr --help": [str(OPENLFR), "--help"],
        "openlfr --version": [str(OPENLFR), "--version"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, command in commands.items():
            times[name].append(wall_time(command))
    medians = {name: statistics.median(values) for name, values in times.items()}
    baseline = medians["python -c pass"]
    figures = {
        "repeats": args.repeats,
        "median_s": {name: round(value, 3) for name, value in medians.items()},
        "ratio_to_baseline": {name: round(value / baseline, 1) for name, value in medians.items()},
        "help_under_1_5_s": medians["openlfr --help"] < 1.5,
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for name, value in medians.items():
            print(f"{name:<20} {value:6.3f} s  ({value / baseline:5.1f} x python -c pass)")
        print(f"openlfr --help under 1.5 s: {figures['help_under_1_5_s']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
