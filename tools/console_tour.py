"""The pictures of docs/console.md, from the console sweep's screenshots (tests/test_console_sweep.py writes them to
test-artifacts/screens/): each cut to a screen's height, narrowed, and reduced to a small palette so that the
repository carries a few tens of kilobytes per picture. The pages' pictures of people are drawn silhouettes.

    .venv/bin/pytest -q tests/test_console_sweep.py && .venv/bin/python tools/console_tour.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SCREENS = ROOT / "test-artifacts" / "screens"
IMAGES = ROOT / "docs" / "images"
LIMIT_BYTES = 120_000

# docs picture: (sweep screenshot, width to keep it at, height to cut it to)
TOUR = {
    "console-queue.png": ("sweep-operator-queue-1366", 1000, 640),
    "console-alert.png": ("sweep-operator-alerts-n-1366", 1000, 900),
    "console-phone-menu.png": ("sweep-operator-queue-390-menu", 390, 844),
    "console-audit.png": ("sweep-auditor-audit-1366", 1000, 700),
    "console-dark.png": ("sweep-operator-queue-1366-dark", 1000, 640),
}


def shrink(source: Path, width: int, height: int, target: Path) -> int:
    picture = Image.open(source).convert("RGB")
    if picture.width != width:
        picture = picture.resize((width, round(picture.height * width / picture.width)), Image.Resampling.LANCZOS)
    picture = picture.crop((0, 0, width, min(height, picture.height)))
    for colours in (64, 32, 16):
        picture.quantize(colors=colours, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
        if target.stat().st_size <= LIMIT_BYTES:
            break
    return target.stat().st_size


def main() -> int:
    IMAGES.mkdir(parents=True, exist_ok=True)
    missing = [name for name, *_ in TOUR.values() if not (SCREENS / f"{name}.png").is_file()]
    if missing:
        print(f"run tests/test_console_sweep.py first: no {', '.join(missing)} in {SCREENS}", file=sys.stderr)
        return 1
    for target, (name, width, height) in TOUR.items():
        size = shrink(SCREENS / f"{name}.png", width, height, IMAGES / target)
        print(f"docs/images/{target}: {size // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
