"""Where uploaded photos wait while the enrolment gate analyses them: a private folder under the data directory,
never the system temp folder, so that a server killed mid-upload strands nothing outside the data OpenLFR
governs. Each upload gets a folder of its own, removed when the analysis ends; whatever a crash left behind is
removed when the server starts again, and that sweep is audited (by the system actor). The same sweep clears
footage uploads a crash cut short (``*.part`` in ``services.footage``'s folder, overwritten with zeros first).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from openlfr.services import footage
from openlfr.services.audit_log import audit_key
from openlfr.services.context import Context
from openlfr.settings import Settings
from openlfr.store import Store

FOLDER = "uploads-in-progress"


def staging_root(settings: Settings) -> Path:
    root = settings.data_dir / FOLDER
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    return root


@contextlib.contextmanager
def staged_folder(settings: Settings) -> Iterator[Path]:
    """A private folder for one upload's files under the data directory, removed with them when the block ends."""
    with tempfile.TemporaryDirectory(prefix="upload-", dir=staging_root(settings)) as folder:
        yield Path(folder)


def sweep(store: Store, settings: Settings) -> tuple[int, int]:
    """Remove what interrupted uploads left: the staging folder's contents and partial footage uploads; returns
    (files, bytes) removed. Each folder's sweep is audited whenever anything was left in it."""
    swept = {FOLDER: _clear_staging(staging_root(settings)), footage.FOOTAGE_DIR: _clear_parts(settings)}
    left = {folder: found for folder, found in swept.items() if found.entries}
    if left:
        ctx = Context.system(settings, audit_key(settings))
        with store.session() as db:
            for folder, found in left.items():
                ctx.audit(db, "uploads.swept", f"folder:{folder}", {"files": found.files, "bytes": found.size})
    return sum(found.files for found in swept.values()), sum(found.size for found in swept.values())


@dataclass(frozen=True)
class Cleared:
    entries: int  # what the folder held (an upload's folder counts even if the crash came before its first file)
    files: int
    size: int


def _clear_staging(root: Path) -> Cleared:
    entries = files = size = 0
    for entry in root.iterdir():
        entries += 1
        for path in [entry] if entry.is_file() else entry.rglob("*"):
            if path.is_file():
                files += 1
                size += path.stat().st_size
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    return Cleared(entries, files, size)


def _clear_parts(settings: Settings) -> Cleared:
    """Footage uploads cut short (``*.part``: the server receiving them has gone, so none can finish), wiped.
    Kept footage is the retention sweep's."""
    folder = footage.footage_dir(settings)
    parts = sorted(folder.glob(f"*{footage.PART}")) if folder.is_dir() else []
    size = 0
    for part in parts:
        if part.is_file() and not part.is_symlink():
            size += part.stat().st_size
            footage.wipe(part)
        else:
            part.unlink(missing_ok=True)
    return Cleared(len(parts), len(parts), size)
