"""Reading images safely: every failure becomes one clear ``ImageError``."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from openlfr.errors import ImageError

# Truncated files must fail loudly rather than decode as half-grey pictures.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def load_rgb(path: Path, max_pixels: int) -> np.ndarray:
    """Load an image file as an RGB uint8 array, refusing anything that is not a whole, sane image."""
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: the file is empty")
    return _decode(path, str(path), max_pixels)


def decode_rgb(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """An image held in memory (an upload that must never touch the disk) as RGB uint8, checked as ``load_rgb``
    checks a file; ``name`` is what error messages call it."""
    if not data:
        raise ImageError(f"{name}: the file is empty")
    return _decode(io.BytesIO(data), name, max_pixels)


def _decode(source: Path | io.BytesIO, name: str, max_pixels: int) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise ImageError(
                        f"{name}: {width}x{height} is too large ({width * height:,} pixels, "
                        f"limit {max_pixels:,}); refusing a possible decompression bomb"
                    )
                img.load()
                # A phone stores a portrait photo sideways with an EXIF orientation tag; a detector fed the
                # stored pixels sees a face lying on its side and finds none.
                ImageOps.exif_transpose(img, in_place=True)
                return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name}: not an image file (or a format this system cannot read)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{name}: image is too large; refusing a possible decompression bomb") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name}: the image is damaged or truncated ({exc})") from exc


def save_rgb(image: np.ndarray, path: Path) -> None:
    try:
        Image.fromarray(image).save(path)
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot save image to {path}: {exc}") from exc


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def thumbnail_jpeg(data: bytes, name: str, longest: int, max_pixels: int) -> bytes:
    """A JPEG image at most ``longest`` pixels wide and high (never enlarged), its proportions kept."""
    with Image.fromarray(decode_rgb(data, name, max_pixels)) as image:
        image.thumbnail((longest, longest), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()
