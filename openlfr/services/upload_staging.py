"""Where uploaded photos wait while the enrolment gate analyses them: a private folder under the data directory,
never the system temp folder, so that a server killed mid-upload strands nothing outside the data OpenLFR
governs. Each upload gets a folder of its own, removed when the analysis ends; whatever a crash left behind is
removed when the server starts again, and that sweep is audited (by the system actor).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

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
    """Remove what interrupted uploads left in the staging folder; returns (files, bytes) removed. Audited
    whenever anything was left."""
    root = staging_root(settings)
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
    if entries:
        ctx = Context.system(settings, audit_key(settings))
        with store.session() as db:
            ctx.audit(db, "uploads.swept", f"folder:{FOLDER}", {"files": files, "bytes": size})
    return files, size
