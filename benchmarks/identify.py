"""Open-set 1:N identification on LFW (issue 3's protocol), the calibration hold-out check, and the DET curve.

Run: .venv/bin/python benchmarks/identify.py [--plot det.png]
The same as `openlfr bench identify --data ../shared/data/lfw --json`; LFW embeddings come from the cache
(`openlfr calibrate` or an earlier run fills it; a cold run embeds 9,527 images, several minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from openlfr.bench.identify import run_identify
from openlfr.settings import get_settings
from openlfr.vision.providers import provider_line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plot", type=Path, default=None, help="save the DET curve (PNG)")
    args = parser.parse_args()
    print(provider_line(), file=sys.stderr, flush=True)  # what the figures were measured on
    settings = get_settings()
    lfw = Path(settings.test_data) / "lfw"
    if not (lfw / "images").is_dir():
        print(f"shared data not found at {lfw}: set OPENLFR_TEST_DATA", file=sys.stderr)
        return 1
    result = run_identify(settings, lfw, plot=args.plot)
    print(json.dumps(result, indent=1))
    holdout = result["holdout"]
    assert isinstance(holdout, dict)
    print(
        f"=> FNIR {result['fnir_at_fpir_1e-2']} at FPIR 1e-2, {result['fnir_at_fpir_1e-3']} at FPIR 1e-3; "
        f"hold-out: target FPIR 1e-3, observed {holdout['observed_fpir']} ({holdout['observed_over_target']}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
