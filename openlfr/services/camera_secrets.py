"""Camera URLs sealed at rest: a URL that carries a secret (a password, a query value: ``openlfr.urls.holds_secret``)
is stored as its redacted form in ``source``, which every answer, page, audit entry and note may show, and the
real URL encrypted in ``sealed`` (Fernet: AES-128-CBC with HMAC-SHA256, from PyCA's ``cryptography``), with a
key kept outside the database like the audit key: ``OPENLFR_CAMERA_KEY`` or the file ``camera.key`` made once
(mode 0600) in the data directory. A copy of the database, its backups and its WAL show no camera's credentials
without the key. Only the capture's side opens it (:func:`opened`, called where a pipeline's cameras are built).

Files follow the same rule, show one thing and open another: an uploaded file is stored as its reference
(``footage:NAME``, ``services.footage``) and a retrospective search's file from an allowed directory as its path
relative to that directory, its full path kept apart in ``file``; :func:`opened` turns either into the path the
capture opens, and :func:`shown` never shows that path.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select

from openlfr.errors import OpenLFRError
from openlfr.services import footage
from openlfr.settings import Settings
from openlfr.store import Store
from openlfr.store.governance_models import Deployment
from openlfr.urls import holds_secret, redact_url

log = logging.getLogger(__name__)

KEY_FILE = "camera.key"
SEALED = "sealed"
FILE = "file"  # the path of a retrospective search's file from an allowed directory (``source`` shows it relative)
SHOWN = "shown"  # in an opened record: what to show of the source the capture opens
HIDDEN = (SEALED, FILE, SHOWN)  # never in an answer


class CameraKeyError(OpenLFRError):
    """The camera key is missing, damaged or not the one a camera URL was sealed with."""


def camera_key(settings: Settings) -> Fernet:
    """The key from settings, else the key file created once (mode 0600) in the data directory."""
    if settings.camera_key:
        return _fernet(settings.camera_key.encode(), "OPENLFR_CAMERA_KEY")
    path = Path(settings.data_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under another name, then linked into place: a process starting beside this one reads
        # either no key file or the whole key, never a half-written one.
        draft = path.with_name(f".{KEY_FILE}.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key())
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process made it first: its key is the one
        finally:
            draft.unlink()
    return _fernet(path.read_bytes().strip(), str(path))


def _fernet(key: bytes, where: str) -> Fernet:
    try:
        return Fernet(key)
    except ValueError:
        raise CameraKeyError(f"{where}: the camera key is damaged (not a Fernet key); restore it from backup") from None


def sealed(settings: Settings, cameras: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The camera records to store: each URL that holds a secret redacted in ``source``, sealed in ``sealed``; a
    path to an uploaded file (as uploads were answered before they had references) as the upload's reference."""
    key: Fernet | None = None
    out = []
    for camera in cameras:
        source = str(camera.get("source", ""))
        upload = footage.named(settings, source)
        if upload is not None and upload != source:
            out.append({**camera, "source": upload})
            continue
        if SEALED in camera or not holds_secret(source):
            out.append(dict(camera))
            continue
        key = key or camera_key(settings)
        out.append({**camera, "source": redact_url(source), SEALED: key.encrypt(source.encode()).decode()})
    return out


def opened(settings: Settings, camera: dict[str, Any]) -> dict[str, Any]:
    """A stored camera record as the capture opens it, and nothing else: its real URL unsealed; an upload's
    reference or an allowed directory's file turned into the file's path, with what to show of it in ``shown``."""
    stored = str(camera.get("source", ""))
    record = {name: value for name, value in camera.items() if name not in HIDDEN}
    if SEALED in camera:
        try:
            source = camera_key(settings).decrypt(str(camera[SEALED]).encode()).decode()
        except InvalidToken:
            raise CameraKeyError(
                f"camera {camera.get('name')!r}: its URL was sealed with another camera key than this server's "
                "(OPENLFR_CAMERA_KEY or camera.key in the data directory): give every server and worker the same key"
            ) from None
        return record | {"source": source}
    path = camera.get(FILE) or footage.file_of(settings, stored)
    return record if path is None else record | {"source": str(path), SHOWN: stored}


def shown(cameras: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Camera records as anyone may see them: URLs redacted, nothing sealed, no file's path on the server."""
    return [
        {name: value for name, value in camera.items() if name not in HIDDEN}
        | ({"source": redact_url(str(camera["source"]))} if "source" in camera else {})
        for camera in cameras
    ]


def seal_stored(store: Store, settings: Settings) -> int:
    """Seal the camera URLs of deployments stored before URLs were sealed, and name by its reference the upload a
    deployment stored before uploads had references names (at start-up); how many rows changed."""
    changed = 0
    with store.session() as db:
        for row in db.scalars(select(Deployment)):
            cameras = sealed(settings, list(row.cameras or []))
            if cameras != row.cameras:
                row.cameras = cameras
                changed += 1
        db.commit()
    if changed:
        log.info("camera URLs with credentials sealed, or uploads named by reference, in %d deployments", changed)
    return changed
