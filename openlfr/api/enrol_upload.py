"""Watchlist changes through the API: create a watchlist, enrol a person from uploaded photos, remove a person.

Uploads are checked before anything is decoded: at most ``MAX_FILES`` files, each within the size limit, a
plain file name (no folders, no ``..``, no control characters) with an image suffix. The bytes go to a private
temporary folder under a name of our choosing (never the client's), are analysed by the store's enrolment
code (the same quality gate as the CLI), and the folder is deleted whatever happens.
"""

from __future__ import annotations

import re
import tempfile
import threading
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from fastapi import UploadFile
from sqlalchemy.orm import Session

from openlfr.api import sources
from openlfr.api.services import Context, NotFound
from openlfr.errors import OpenLFRError
from openlfr.governance.deployments import now_utc
from openlfr.settings import Settings

MAX_FILES = 10
SAFE_NAME = re.compile(r"^[\w][\w .()+-]{0,199}$")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


class UploadRefused(OpenLFRError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes


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
            raise UploadRefused(f"{name} is larger than {max_bytes:,} bytes", status=413)
        if not data:
            raise UploadRefused(f"{name} is empty")
        out.append(Upload(name, data))
    return out


_ENGINE_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _engine(settings_key: str) -> Any:
    from openlfr.vision.engine import build_engine

    return build_engine(Settings.model_validate_json(settings_key), stills=True)


def create_watchlist(db: Session, ctx: Context, name: str, purpose: str) -> None:
    from openlfr.enrolment.service import create_watchlist as store_create

    store_create(db, name, purpose, ctx.actor, now_utc())
    ctx.audit(db, "watchlist.create", f"watchlist:{name}", {"purpose": purpose})


def enrol(
    db: Session,
    ctx: Context,
    watchlist_name: str,
    person: str,
    display_name: str,
    category: str,
    reason: str,
    legal_basis: str,
    uploads: list[Upload],
) -> dict[str, Any]:
    from openlfr.enrolment.gate import QualityGate
    from openlfr.enrolment.photos import analyse_photo
    from openlfr.enrolment.service import PersonDetails
    from openlfr.enrolment.service import enrol as store_enrol
    from openlfr.store.watchlists import get_watchlist

    if not sources.watchlist_exists(db, watchlist_name):
        raise NotFound(f"no watchlist named {watchlist_name!r}")
    settings = ctx.settings
    now = now_utc()
    gate = QualityGate.from_settings(settings)
    with tempfile.TemporaryDirectory(prefix="openlfr-upload-") as folder, _ENGINE_LOCK:
        engine = _engine(settings.model_dump_json())
        results = []
        for index, upload in enumerate(uploads):
            path = Path(folder) / f"{index}{Path(upload.name).suffix.lower()}"
            path.write_bytes(upload.data)
            result = analyse_photo(
                engine,
                path,
                gate,
                None,
                max_pixels=settings.max_image_pixels,
                detect_max_side=settings.enrol_detect_max_side,
            )
            result.source = upload.name  # the report names the client's file, never our temporary path
            if result.reason:
                result.reason = result.reason.replace(str(path), upload.name)
            results.append(result)
    enrolled = store_enrol(
        db,
        get_watchlist(db, watchlist_name),
        PersonDetails(
            reference_id=person,
            display_name=display_name,
            category=category,
            reason=reason,
            legal_basis=legal_basis,
        ),
        results,
        actor=ctx.actor,
        now=now,
        default_expiry=now + timedelta(days=settings.watchlist_entry_days),
        duplicate_score=settings.enrol_duplicate_score,
    )
    ctx.audit(
        db,
        "watchlist.enrol",
        f"watchlist:{watchlist_name}/person:{enrolled.reference_id}",
        {"photos": [u.name for u in uploads], "category": enrolled.category},
    )
    return {
        "watchlist": watchlist_name,
        "person": enrolled.reference_id,
        "display_name": enrolled.display_name,
        "images": len(enrolled.images),
        "expires_at": enrolled.expires_at.isoformat(),
    }


def remove_person(db: Session, ctx: Context, watchlist_name: str, person: str) -> int:
    from openlfr.enrolment.service import remove_person as store_remove
    from openlfr.store.watchlists import find_person, get_watchlist

    if not sources.watchlist_exists(db, watchlist_name):
        raise NotFound(f"no watchlist named {watchlist_name!r}")
    watchlist = get_watchlist(db, watchlist_name)
    if find_person(db, watchlist, person) is None:
        raise NotFound(f"nobody with id {person!r} on watchlist {watchlist_name!r}")
    removed = store_remove(db, watchlist, person)
    ctx.audit(db, "watchlist.remove_person", f"watchlist:{watchlist_name}/person:{person}", {"images": removed})
    return removed
