"""Restoring a backup (openlfr/services/backup.py says what an archive holds and how it is signed) into an empty
database: the signature and every digest checked before anything is written, the schema revision checked and then
migrated to this version's, the audit chain verified (with the head the backup recorded still in it) before the
database is put in place; the restore is audited in the restored log."""

from __future__ import annotations

import hmac
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import sqlalchemy as sa

from openlfr.errors import OpenLFRError
from openlfr.services import audit_log
from openlfr.services.backup import (
    FILES_DIRS,
    FORMAT,
    KEYS,
    MANIFEST,
    POSTGRES_MEMBER,
    SIGNATURE,
    SQLITE_MEMBER,
    BackupError,
    Restored,
    libpq_url,
    manifest_signature,
    pg_tool,
    run_tool,
    schema_revisions,
    sqlite_path,
)
from openlfr.services.context import CLI_ROLE, Context, local_actor
from openlfr.settings import Settings
from openlfr.store import Store, open_store
from openlfr.store.db import MIGRATIONS_DIR, make_engine, normalise_url
from openlfr.vision.model_files import file_sha256

_FIXED = {MANIFEST, SIGNATURE, SQLITE_MEMBER, POSTGRES_MEMBER, *(f"keys/{name}" for name in KEYS)}


def _allowed(name: str) -> bool:
    path = PurePosixPath(name)
    if name in _FIXED:
        return True
    return (
        not path.is_absolute()
        and ".." not in path.parts
        and len(path.parts) >= 3
        and path.parts[0] == "files"
        and path.parts[1] in FILES_DIRS
    )


def _unpack(source: Path, folder: Path) -> dict[str, Path]:
    """The archive's members as files in ``folder``: regular files with the expected names only, each once."""
    try:
        archive = tarfile.open(source, "r:")  # noqa: SIM115 (closed by the with below: its errors differ)
    except (tarfile.TarError, OSError) as exc:
        raise BackupError(f"{source}: not a readable OpenLFR backup archive ({exc})") from None
    out: dict[str, Path] = {}
    with archive:
        try:
            for member in archive.getmembers():
                if not member.isfile() or not _allowed(member.name) or member.name in out:
                    raise BackupError(f"{source}: unexpected member {member.name!r}: not an archive `backup` made")
                target = folder / "members" / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                handle = archive.extractfile(member)
                assert handle is not None  # a regular file
                with handle, target.open("wb") as written:
                    shutil.copyfileobj(handle, written)
                out[member.name] = target
        except tarfile.TarError as exc:
            raise BackupError(f"{source}: the archive is damaged ({exc})") from None
    if MANIFEST not in out or SIGNATURE not in out:
        raise BackupError(f"{source}: no signed manifest: not an archive `openlfr backup` made")
    return out


def _key(settings: Settings, given: Path | None, members: dict[str, Path], name: str) -> tuple[bytes | None, str]:
    """The key named ``name`` for the restored system and where it came from: a file given, the settings, the data
    directory's key file, or the archive (when it was made ``--with-keys``)."""
    configured = settings.audit_key if name == "audit.key" else settings.camera_key
    in_data_dir = settings.data_dir / KEYS[name]
    if given is not None:
        return given.read_bytes().strip(), str(given)
    if configured:
        return configured.encode(), "settings"
    if in_data_dir.exists():
        return in_data_dir.read_bytes().strip(), str(in_data_dir)
    if f"keys/{name}" in members:
        return members[f"keys/{name}"].read_bytes().strip(), "the archive"
    return None, "nowhere"


def _check(members: dict[str, Path], audit_key: bytes) -> dict[str, Any]:
    body = members[MANIFEST].read_bytes()
    signature = members[SIGNATURE].read_text().strip()
    if not hmac.compare_digest(manifest_signature(audit_key, body), signature):
        raise BackupError(
            "the backup's manifest does not match its signature: the archive was altered, or this is not the "
            "audit key it was made with; nothing was restored"
        )
    manifest: dict[str, Any] = json.loads(body)
    if manifest.get("format") != FORMAT:
        raise BackupError(f"unknown backup format {manifest.get('format')!r}; nothing was restored")
    listed = set(manifest["members"])
    present = set(members) - {MANIFEST, SIGNATURE}
    if listed != present:
        raise BackupError(f"the archive's members differ from its manifest: {sorted(listed ^ present)}")
    for name, entry in manifest["members"].items():
        if file_sha256(members[name]) != entry["sha256"]:
            raise BackupError(f"{name} in the archive was altered (its SHA-256 differs from the manifest's)")
    return manifest


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {script.revision for script in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions()}


def _check_revisions(engine: sa.Engine, manifest: dict[str, Any]) -> list[str]:
    found = schema_revisions(engine)
    if found != manifest["schema_revisions"]:
        raise BackupError(f"the restored schema is at {found}, the manifest says {manifest['schema_revisions']}")
    unknown = set(found) - _known_revisions()
    if unknown:
        raise BackupError(f"the backup is from a newer OpenLFR (schema {sorted(unknown)}): restore it with that one")
    return found


def _verify_and_record(store: Store, ctx: Context, manifest: dict[str, Any], keys_from: dict[str, str]) -> int:
    head = manifest.get("audit_head")
    with store.session() as db:
        verdict = audit_log.verify(db, ctx.key, (int(head[0]), str(head[1])) if head else None)
        if not verdict.ok:
            raise BackupError(f"the restored audit log does not verify: {verdict.message}")
        ctx.audit(
            db,
            "backup.restored",
            "backup:" + manifest["created_at"],
            {"made_by_version": manifest["openlfr_version"], "schema": manifest["schema_revisions"], "keys": keys_from},
        )
        count = int(db.scalar(sa.text("SELECT count(*) FROM audit_log")) or 0)
    return count


def _empty(engine: sa.Engine) -> bool:
    with engine.connect() as connection:
        return not sa.inspect(connection).get_table_names()


def _place_key(settings: Settings, name: str, key: bytes, origin: str) -> None:
    """A key that came from a file or the archive becomes the data directory's key file (mode 0600)."""
    path = settings.data_dir / KEYS[name]
    if origin in ("settings", str(path)):
        return
    if path.exists():
        if path.read_bytes().strip() == key:
            return
        raise BackupError(f"{path} holds another key already; move it away or restore with that key")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as handle:
        handle.write(key)


def restore_backup(
    settings: Settings,
    source: Path,
    by: str | None = None,
    audit_key_file: Path | None = None,
    camera_key_file: Path | None = None,
) -> Restored:
    """Restore ``source`` into the configured database, which must be empty, and the data directory."""
    url = normalise_url(settings.resolved_database_url())
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".openlfr-restore-", dir=settings.data_dir) as work:
        members = _unpack(source, Path(work))
        audit_key, audit_from = _key(settings, audit_key_file, members, "audit.key")
        if audit_key is None:
            raise BackupError(
                "the audit key is needed to check this backup (it was kept apart from the archive): give "
                "--audit-key FILE or OPENLFR_AUDIT_KEY; nothing was restored"
            )
        manifest = _check(members, audit_key)
        if manifest["database"] != url.get_backend_name():
            raise BackupError(f"a {manifest['database']} backup cannot be restored into {url.get_backend_name()}")
        camera_key, camera_from = _key(settings, camera_key_file, members, "camera.key")
        keys_from = {"audit.key": audit_from, "camera.key": camera_from}
        ctx = Context(settings, audit_key, local_actor(by), CLI_ROLE)
        if url.get_backend_name() == "sqlite":
            migrated = _restore_sqlite(settings, sqlite_path(url), members[SQLITE_MEMBER], ctx, manifest, keys_from)
        else:
            migrated = _restore_postgres(settings, members[POSTGRES_MEMBER], ctx, manifest, keys_from)
        _place_key(settings, "audit.key", audit_key, audit_from)
        if camera_key is not None:
            _place_key(settings, "camera.key", camera_key, camera_from)
        for name, path in members.items():
            if name.startswith("files/"):
                target = settings.data_dir / PurePosixPath(name).relative_to("files")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
    return Restored(manifest, migrated[1], migrated[0], keys_from)


def _restore_sqlite(
    settings: Settings, target: Path, copy: Path, ctx: Context, manifest: dict[str, Any], keys_from: dict[str, str]
) -> tuple[list[str], int]:
    if target.exists() and target.stat().st_size > 0:
        engine = make_engine(normalise_url(f"sqlite:///{target}"))
        try:
            if not _empty(engine):
                raise BackupError(f"{target} is not empty: a backup is restored into a fresh data directory")
        finally:
            engine.dispose()
    draft = target.with_name(f".{target.name}.restoring")
    shutil.copyfile(copy, draft)
    os.chmod(draft, 0o600)
    try:
        check = sa.create_engine(f"sqlite:///{draft}")
        try:
            revisions = _check_revisions(check, manifest)
        finally:
            check.dispose()
        store = open_store(settings.model_copy(update={"database_url": f"sqlite:///{draft}"}))  # migrates
        try:
            count = _verify_and_record(store, ctx, manifest, keys_from)
        finally:
            store.close()
        for suffix in ("-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        os.replace(draft, target)
    finally:
        for leftover in (draft, Path(f"{draft}-wal"), Path(f"{draft}-shm")):
            leftover.unlink(missing_ok=True)
    return revisions, count


def _restore_postgres(
    settings: Settings, dump: Path, ctx: Context, manifest: dict[str, Any], keys_from: dict[str, str]
) -> tuple[list[str], int]:
    url = normalise_url(settings.resolved_database_url())
    engine = make_engine(url)
    try:
        if not _empty(engine):
            raise BackupError(f"{Store(engine).url} is not empty: a backup is restored into a fresh database")
        target, environment = libpq_url(url)
        command = [pg_tool(Store(engine), "pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error"]
        run_tool([*command, f"--dbname={target}", str(dump)], environment, "pg_restore")
        try:
            revisions = _check_revisions(engine, manifest)
            store = open_store(settings)  # migrates
            try:
                count = _verify_and_record(store, ctx, manifest, keys_from)
            finally:
                store.close()
        except OpenLFRError:
            with engine.begin() as connection:  # the database was empty: leave it so
                connection.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
            raise
    finally:
        engine.dispose()
    return revisions, count
