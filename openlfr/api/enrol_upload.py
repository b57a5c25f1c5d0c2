"""Uploaded photos, checked before anything is decoded: at most ``MAX_FILES`` files, each within the size limit,
a plain file name (no folders, no ``..``, no control characters) with an image suffix. Enrolling them is the
application layer's (``openlfr.services.enrolment.enrol_uploads``).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from fastapi import UploadFile

from openlfr.errors import UploadRefused, UploadTooLarge
from openlfr.services.enrolment import Upload

MAX_FILES = 10
SAFE_NAME = re.compile(r"^[\w][\w .()+-]{0,199}$")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


def safe_filename(raw: str | None) -> str:
    """The client's file name if it is a plain name with an image suffix; refuses anything path-like."""
    name = raw or ""
    if not name or "\x00" in name or len(name) > 200:
        raise UploadRefused("each upload needs a plain file name (at most 200 characters)")
    if PurePosixPath(name).name != name or PureWindowsPath(name).name != name or name in (".", ".."):
        raise UploadRefused(f"file name {name!r} contains a path; send the file name only")
    if not SAFE_NAME.match(name):
        raise UploadRefused(f"file name {name!r} has characters that are not allowed")
    if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
        raise UploadRefused(f"{name!r} is not an image file ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return name


async def read_uploads(files: list[UploadFile], max_bytes: int) -> list[Upload]:
    if not files:
        raise UploadRefused("send at least one photo")
    if len(files) > MAX_FILES:
        raise UploadRefused(f"at most {MAX_FILES} photos at a time")
    out = []
    for upload in files:
        name = safe_filename(upload.filename)
        data = await upload.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise UploadTooLarge(f"{name} is larger than {max_bytes:,} bytes")
        if not data:
            raise UploadRefused(f"{name} is empty")
        out.append(Upload(name, data))
    return out
