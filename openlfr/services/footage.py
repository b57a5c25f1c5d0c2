"""Recorded footage uploaded for retrospective searches: kept in ``data_dir/rfr-footage`` (a directory every
retrospective search may read, beside the admin's ``rfr_source_dirs``), only as long as a search needs it.

An upload is written to a ``.part`` file as it arrives (never held in memory), checked to be a video, then named
by its hash; refused, nothing of it stays. The retention sweep (``sweep``) deletes a file once every deployment
naming it has stopped (ended or cancelled; an urgent one lapsed), or ``rfr_unused_footage_hours`` after its
upload if no search that runs or will run names it (unnamed, or named by drafts nobody authorised); the file is
overwritten with zeros before it is unlinked, and each deletion is audited.

An upload is known by its reference, ``footage:NAME`` (its hash and the name it was sent under): the upload answers
it, a draft's camera names it, and answers, pages, records and errors show it. Only where the capture opens the
file is it turned into a path (``file_of``, through ``camera_secrets.opened``), so that no answer shows where on
the server the data directory lies.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from openlfr.clock import utc_now
from openlfr.errors import OpenLFRError, UploadTooLarge
from openlfr.governance import deployments
from openlfr.governance.deployments import Kind, Phase
from openlfr.services.context import Context
from openlfr.settings import Settings
from openlfr.store.governance_models import AuditEntry, Deployment

FOOTAGE_DIR = "rfr-footage"
PART = ".part"
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
SCHEME = "footage:"
# A kept upload's name: its hash's first 16 hex digits, then the name it was sent under, made safe (never a path).
KEPT_NAME = re.compile(r"[0-9a-f]{16}-[A-Za-z0-9._-]{1,80}")
WIPE_CHUNK = 1 << 20


def footage_dir(settings: Settings) -> Path:
    return settings.data_dir / FOOTAGE_DIR


def reference(path: Path) -> str:
    """What an upload kept at ``path`` is known by: ``footage:NAME``."""
    return f"{SCHEME}{path.name}"


def is_reference(source: str) -> bool:
    """Whether ``source`` is the form of an upload's reference (a name, never a path)."""
    name = source.removeprefix(SCHEME)
    return name != source and KEPT_NAME.fullmatch(name) is not None and not name.endswith(PART)


def file_of(settings: Settings, source: str) -> Path | None:
    """The file a reference names (whether it exists or not); None if ``source`` is no upload's reference."""
    return footage_dir(settings) / source.removeprefix(SCHEME) if is_reference(source) else None


def named(settings: Settings, source: str) -> str | None:
    """The upload a camera's ``source`` names, as its reference: a reference, or (a deployment drafted before uploads
    had references) the path of a file in the footage directory; None for anything else."""
    if file_of(settings, source) is not None:
        return source
    path = Path(source)
    inside = path.is_absolute() and path.parent == footage_dir(settings) and KEPT_NAME.fullmatch(path.name)
    return reference(path) if inside else None


async def receive(settings: Settings, chunks: AsyncIterator[bytes]) -> tuple[Path, int, str]:
    """Write an upload to the footage directory as it arrives: (its ``.part`` file, bytes, sha256)."""
    folder = footage_dir(settings)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    part = folder / f"{uuid.uuid4().hex}{PART}"
    digest, size = hashlib.sha256(), 0
    try:
        with part.open("xb") as out:
            os.chmod(part, 0o600)
            async for chunk in chunks:
                size += len(chunk)
                if size > settings.rfr_max_upload_bytes:
                    raise UploadTooLarge(f"footage larger than {settings.rfr_max_upload_bytes:,} bytes")
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        wipe(part)
        raise
    if size == 0:
        wipe(part)
        raise OpenLFRError("the upload is empty: send the video file as the request body")
    return part, size, digest.hexdigest()


def keep(
    db: Session, ctx: Context, part: Path, name: str, size: int, sha256: str, seconds_of: Callable[[Path], float]
) -> tuple[Path, float]:
    """Name a received upload by its hash once ``seconds_of`` (the video check) accepts it, audited; (its path,
    its seconds of video)."""
    stem = SAFE_NAME.sub("_", Path(name).name)[-80:] or "footage"
    if stem.endswith(PART):  # a kept upload never looks like one cut short (the start-up sweep wipes those)
        stem = f"{stem[: -len(PART)]}_part"
    final = part.with_name(f"{sha256[:16]}-{stem}")
    try:
        seconds = float(seconds_of(part))
    except BaseException:
        wipe(part)
        raise
    part.replace(final)
    ctx.audit(
        db,
        "footage.upload",
        f"footage:{final.name}",
        {"name": name, "bytes": size, "sha256": sha256, "seconds": seconds},
    )
    return final, seconds


@dataclass(frozen=True)
class Upload:
    """An upload still kept, as its uploader may name it in a draft: its reference, never its path."""

    source: str  # footage:NAME
    name: str  # the file's name as it was sent
    seconds: float
    uploaded_at: datetime


def uploads_of(db: Session, settings: Settings, actor: str) -> list[Upload]:
    """The footage ``actor`` uploaded that is still kept (the retention sweep has not wiped it), newest first."""
    entries = db.scalars(
        select(AuditEntry)
        .where(AuditEntry.action == "footage.upload", AuditEntry.actor == actor)
        .order_by(AuditEntry.seq.desc())
    )
    found: dict[str, Upload] = {}
    for entry in entries:
        path = file_of(settings, entry.target)
        if entry.target in found or path is None or not path.is_file():
            continue
        details = entry.details or {}
        name = str(details.get("name") or path.name)
        found[entry.target] = Upload(entry.target, name, float(details.get("seconds") or 0.0), entry.at)
    return list(found.values())


def wipe(path: Path) -> None:
    """Overwrite a file with zeros, then remove it (a file system may keep copies of its blocks elsewhere; the
    footage directory belongs on encrypted storage, as the database does)."""
    try:
        size = path.stat().st_size
        with path.open("r+b") as out:
            zeros = bytes(WIPE_CHUNK)
            for start in range(0, size, WIPE_CHUNK):
                out.write(zeros[: min(WIPE_CHUNK, size - start)])
            out.flush()
            os.fsync(out.fileno())
        path.unlink()
    except FileNotFoundError:
        pass


def sweep(db: Session, ctx: Context, now: datetime | None = None) -> list[str]:
    """Delete the uploaded footage no search needs any more; the names deleted."""
    folder = footage_dir(ctx.settings)
    if not folder.is_dir():
        return []
    moment = now or utc_now()
    unused_s = ctx.settings.rfr_unused_footage_hours * 3600
    users: dict[str, list[Deployment]] = {}
    for row in db.scalars(select(Deployment).where(Deployment.kind == Kind.RETROSPECTIVE.value)):
        for camera in row.cameras:
            upload = named(ctx.settings, str(camera.get("source", "")))
            if upload is not None:
                users.setdefault(upload, []).append(row)
    deleted = []
    for path in sorted(folder.iterdir()):
        naming = users.get(reference(path), [])
        phases = [deployments.phase(row, moment) for row in naming]
        if any(phase in (Phase.SCHEDULED, Phase.LIVE, Phase.URGENT) for phase in phases):
            continue  # a search runs, or will
        stopped = bool(naming) and all(phase in (Phase.ENDED, Phase.CANCELLED) for phase in phases)
        # Unnamed, or named only by drafts nobody authorised: kept for the admin's time, then gone.
        if stopped or time.time() - path.stat().st_mtime > unused_s:
            wipe(path)
            ctx.audit(db, "footage.deleted", f"footage:{path.name}", {"searches": [row.id for row in naming]})
            deleted.append(path.name)
    return deleted
