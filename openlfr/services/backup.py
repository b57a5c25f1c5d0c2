"""Backups and restores: one tar archive holding the database (SQLite through its online backup API, so a running
server goes on writing; PostgreSQL through ``pg_dump``), the user's calibration tables, and a signed manifest.

What is in it: the database holds everything a deployment leaves (watchlists with their reference pictures,
snapshots, alerts with their probe images, reviews, the audit log); from the data directory only ``calibration/``.
Left out: footage uploaded for retrospective searches (``rfr-footage/``, large, deleted once its searches stop:
keep the originals where the evidence is kept), staged uploads and the demo's files. The keys (``audit.key``,
``camera.key``) are left out unless asked (``--with-keys``): whoever holds an archive and its keys can forge audit
entries and open the camera URLs, so they are kept apart.

The manifest lists every member with its SHA-256 and is signed with HMAC-SHA256 under a key derived from the audit
key. A restore checks the signature first, then each member's digest, before anything is written: a flipped byte
fails its digest, and an edited member with its digest rewritten fails the signature, which no one without the
audit key can remake. After restoring, the schema revision must be the manifest's (then it is migrated to this
version's), and the audit chain must verify and still hold the entry that was the head when the backup was made.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from openlfr import __version__
from openlfr.clock import utc_now
from openlfr.errors import OpenLFRError
from openlfr.services import audit_log, camera_secrets
from openlfr.services.context import Context
from openlfr.settings import Settings
from openlfr.store import Store
from openlfr.vision.model_files import file_sha256

FORMAT = "openlfr-backup/1"
MANIFEST, SIGNATURE = "manifest.json", "manifest.sig"
SQLITE_MEMBER, POSTGRES_MEMBER = "database.sqlite3", "database.pgdump"
KEYS = {"audit.key": audit_log.KEY_FILE, "camera.key": camera_secrets.KEY_FILE}  # member name -> file in data_dir
FILES_DIRS = ("calibration",)  # what the archive keeps from the data directory, under files/
TOOL_SECONDS = 3600


class BackupError(OpenLFRError):
    """A backup cannot be made, or an archive is refused by a restore (altered, incomplete, or not for here)."""


@dataclass(frozen=True)
class Restored:
    manifest: dict[str, Any]
    audit_entries: int
    migrated_from: list[str]
    keys_from: dict[str, str]


def manifest_signature(audit_key: bytes, manifest: bytes) -> str:
    signing_key = hmac.new(audit_key, b"openlfr backup manifest", hashlib.sha256).digest()
    return hmac.new(signing_key, manifest, hashlib.sha256).hexdigest()


def libpq_url(url: URL) -> tuple[str, dict[str, str]]:
    """The URL for pg_dump and pg_restore without its password, which goes in their environment instead."""
    environment = dict(os.environ)
    if url.password:
        environment["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), environment


def pg_tool(store: Store, tool: str) -> str:
    """The PostgreSQL client tool of the server's major version (Debian installs each under its own folder)."""
    with store.engine.connect() as connection:
        major = int(connection.execute(sa.text("SHOW server_version_num")).scalar_one()) // 10000
    installed = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"), key=lambda p: int(p.parts[-3]))
    for path in installed:
        if int(path.parts[-3]) >= major:
            return str(path)
    found = shutil.which(tool)
    if found is None:
        raise BackupError(f"{tool} is not installed (Debian package postgresql-client-{major})")
    return found


def run_tool(command: list[str], environment: dict[str, str], what: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=TOOL_SECONDS, check=False)
    if done.returncode != 0:
        raise BackupError(f"{what} failed: {done.stderr.strip()[-500:]}")


def sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory database cannot be backed up")
    return Path(url.database)


def _copy_sqlite(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent copy while others write (it restarts on their changes)."""
    os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    live = sqlite3.connect(source, timeout=30)
    copy = sqlite3.connect(target)
    try:
        live.backup(copy)  # one step under one read snapshot: WAL lets the server write on meanwhile
        copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no WAL beside it
    finally:
        copy.close()
        live.close()


def schema_revisions(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        return sorted(connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


def _key_bytes(settings: Settings, member: str) -> bytes | None:
    if member == "audit.key":
        return audit_log.audit_key(settings)
    if settings.camera_key:
        return settings.camera_key.encode()
    path = settings.data_dir / KEYS[member]
    return path.read_bytes().strip() if path.exists() else None


def create_backup(
    store: Store, ctx: Context, destination: Path, with_keys: bool = False
) -> tuple[Path, dict[str, Any]]:
    """Write the archive and audit it (``backup.created``, with the digest of the manifest it was signed with)."""
    written, manifest, body = write_archive(store, ctx.settings, ctx.key, destination, with_keys)
    with store.session() as db:
        details = {
            "archive": written.name,
            "manifest_sha256": hashlib.sha256(body).hexdigest(),
            "database": manifest["database"],
            "keys_included": with_keys,
        }
        ctx.audit(db, "backup.created", f"backup:{written.name}", details)
    return written, manifest


def write_archive(
    store: Store, settings: Settings, audit_key: bytes, destination: Path, with_keys: bool = False
) -> tuple[Path, dict[str, Any], bytes]:
    """The archive (never over a file; a folder gets a dated name in it), its manifest, and the manifest's bytes
    as signed."""
    now = utc_now()
    if destination.is_dir():
        destination = destination / f"openlfr-{now.strftime('%Y%m%dT%H%M%SZ')}.tar"
    if destination.exists():
        raise BackupError(f"{destination} exists already: a backup never overwrites a file")
    destination.parent.mkdir(parents=True, exist_ok=True)
    url = store.engine.url
    with tempfile.TemporaryDirectory(prefix=".openlfr-backup-", dir=destination.parent) as work:
        folder = Path(work)
        members: dict[str, Path] = {}
        with store.session() as db:
            anchor = audit_log.current_anchor(db)
        if url.get_backend_name() == "sqlite":
            members[SQLITE_MEMBER] = folder / SQLITE_MEMBER
            _copy_sqlite(sqlite_path(url), members[SQLITE_MEMBER])
            copy = sa.create_engine(f"sqlite:///{members[SQLITE_MEMBER]}")
            try:
                revisions = schema_revisions(copy)
            finally:
                copy.dispose()
        else:
            members[POSTGRES_MEMBER] = folder / POSTGRES_MEMBER
            revisions = schema_revisions(store.engine)
            target, environment = libpq_url(url)
            command = [pg_tool(store, "pg_dump"), "--format=custom", "--no-owner", "--no-privileges"]
            run_tool([*command, f"--file={members[POSTGRES_MEMBER]}", f"--dbname={target}"], environment, "pg_dump")
        for name in FILES_DIRS:
            for path in sorted((settings.data_dir / name).rglob("*")):
                if path.is_file() and not path.is_symlink():
                    members[f"files/{path.relative_to(settings.data_dir).as_posix()}"] = path
        if with_keys:
            for member in KEYS:
                key = _key_bytes(settings, member)
                if key is not None:
                    (folder / member).write_bytes(key)
                    members[f"keys/{member}"] = folder / member
        manifest = {
            "format": FORMAT,
            "openlfr_version": __version__,
            "created_at": now.isoformat(),
            "database": url.get_backend_name(),
            "schema_revisions": revisions,
            "audit_head": list(anchor) if anchor else None,
            "members": {
                name: {"sha256": file_sha256(path), "bytes": path.stat().st_size} for name, path in members.items()
            },
        }
        body = json.dumps(manifest, indent=1, sort_keys=True).encode()
        (folder / MANIFEST).write_bytes(body)
        (folder / SIGNATURE).write_text(manifest_signature(audit_key, body) + "\n")
        draft = folder / "archive.tar"
        os.close(os.open(draft, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))  # it holds faces: its owner's only
        with tarfile.open(draft, "w") as archive:
            for name, path in [(MANIFEST, folder / MANIFEST), (SIGNATURE, folder / SIGNATURE), *members.items()]:
                archive.add(path, arcname=name, recursive=False)
        os.replace(draft, destination)
    return destination, manifest, body
