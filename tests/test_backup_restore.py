"""``openlfr init``, ``backup`` and ``restore`` (issue 19, item 5): a backup of a running server with a live
deployment, restored into a fresh data directory (SQLite) and a fresh database (PostgreSQL), holds the same
alerts, reviews and audit entries, with the audit chain intact; an archive altered in any way is refused before
anything is written; a backup from an older schema is migrated when restored."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from openlfr.errors import OpenLFRError
from openlfr.services import audit_log
from openlfr.services.backup import BackupError, write_archive
from openlfr.services.restore import restore_backup
from openlfr.settings import Settings
from openlfr.store.db import Store, make_engine, normalise_url
from tests.serverkit import (
    FAST_HASHING,
    JUSTIFICATION,
    LiveServer,
    add_alert,
    add_cast,
    add_watchlist,
    build_app,
    configure,
    draft_body,
    login,
)

COMPARED = ("alerts", "alert_reviews", "deployments", "watchlist_people", "reference_images", "users")


def _rows(url: str, table: str) -> list[dict[str, Any]]:
    engine = make_engine(normalise_url(url))
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1"))]
    finally:
        engine.dispose()


def _openlfr(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openlfr", *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def _live_deployment_with_reviews(app: Any) -> None:
    olly, omar, ava = login(app, "olly"), login(app, "omar"), login(app, "ava")
    body = draft_body(
        datetime.now(UTC) - timedelta(seconds=5),
        cameras=[{"name": "entrance", "source": "rtsp://u:pw@127.0.0.1:8554/cam"}],
    )
    drafted = olly.post("/api/deployments", json=body).json()
    assert ava.post(f"/api/deployments/{drafted['id']}/authorise", json={"justification": JUSTIFICATION}).is_success
    confirmed, false_alert = add_alert(app, drafted["id"], "P001"), add_alert(app, drafted["id"], "P002", track_id=8)
    assert olly.post(f"/api/alerts/{confirmed}/decision", json={"decision": "confirmed"}).is_success
    assert omar.post(f"/api/alerts/{confirmed}/verify").is_success
    assert omar.post(f"/api/alerts/{false_alert}/decision", json={"decision": "not_a_match"}).is_success


def _fresh_target(request: pytest.FixtureRequest, source_url: str, tmp_path: Path) -> tuple[Path, str]:
    """A fresh data directory, and a fresh database of the source's kind."""
    data_dir = tmp_path / "restored-data"
    if source_url.startswith("sqlite"):
        return data_dir, f"sqlite:///{data_dir / 'openlfr.db'}"
    server = request.getfixturevalue("postgres_server")
    name = f"r_{uuid.uuid4().hex[:12]}"
    server.admin(f'CREATE DATABASE "{name}"')
    request.addfinalizer(lambda: server.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return data_dir, server.url(name)


def _tampered(archive: Path, out: Path, change: Any) -> Path:
    """A copy of the archive whose members went through ``change(folder)`` and were packed again as they were."""
    folder = out.with_suffix("")
    with tarfile.open(archive) as source:
        names = source.getnames()
        source.extractall(folder, filter="data")
    change(folder)
    with tarfile.open(out, "w") as packed:
        for name in names:
            packed.add(folder / name, arcname=name, recursive=False)
    return out


def test_backup_of_a_running_server_restores_the_same_records(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, store_url: str, tmp_path: Path
) -> None:
    configure(monkeypatch)
    app = build_app()
    add_cast(app, "olly", "omar", "ava")
    add_watchlist(app)
    _live_deployment_with_reviews(app)
    source = app.state.server.settings
    env = {**os.environ, **FAST_HASHING}
    archive = tmp_path / "backups" / "openlfr.tar"
    archive.parent.mkdir()
    try:
        with LiveServer(app):  # the server runs (and holds its connections) while the backup is made
            made = _openlfr(env, "backup", str(archive), "--by", "backup-test")
            assert made.returncode == 0, made.stderr
            before = {table: _rows(store_url, table) for table in COMPARED}
            audit_before = _rows(store_url, "audit_log")
    finally:
        app.state.server.store.close()
    assert oct(archive.stat().st_mode & 0o777) == "0o600"
    with tarfile.open(archive) as packed:
        names = packed.getnames()
        manifest = json.loads(packed.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert not any(name.startswith("keys/") for name in names)  # the keys stay apart unless asked
    head = manifest["audit_head"][0]
    assert audit_before[-1]["action"] == "backup.created" and audit_before[-1]["seq"] == head + 1

    data_dir, target_url = _fresh_target(request, store_url, tmp_path)
    target_env = {**env, "OPENLFR_DATA_DIR": str(data_dir), "OPENLFR_DATABASE_URL": target_url}
    audit_key, camera_key = source.data_dir / "audit.key", source.data_dir / "camera.key"

    # Altered archives are refused before anything is written: a flipped byte; an edited row whose digest was
    # rewritten in the manifest (the signature no longer matches); no audit key to check it with at all.
    flipped = tmp_path / "flipped.tar"
    with tarfile.open(archive) as packed:
        database = next(m for m in packed.getmembers() if m.name.startswith("database."))
    raw = bytearray(archive.read_bytes())
    raw[database.offset_data + database.size // 2] ^= 0x01
    flipped.write_bytes(bytes(raw))
    refused = [(flipped, audit_key, "altered")]
    if store_url.startswith("sqlite"):
        refused.append((_tampered(archive, tmp_path / "edited.tar", _edit_a_row), audit_key, "signature"))
    target = Settings(data_dir=data_dir, database_url=target_url)  # in this process: the CLI's path is below
    for bad, key, says in refused:
        with pytest.raises(BackupError, match=says):
            restore_backup(target, bad, "test", key)
    with pytest.raises(BackupError, match="audit key is needed"):
        restore_backup(target, archive, "test")
    assert not (data_dir / "openlfr.db").exists() and not (data_dir / "audit.key").exists()
    assert _tables(target_url) == []

    restored = _openlfr(
        target_env, "restore", str(archive), "--audit-key", str(audit_key), "--camera-key", str(camera_key)
    )
    assert restored.returncode == 0, restored.stderr
    for table in COMPARED:
        assert _rows(target_url, table) == before[table], table
    audit_after = _rows(target_url, "audit_log")
    assert audit_after[:head] == audit_before[:head]
    assert audit_after[head]["action"] == "backup.restored"
    verified = _openlfr(target_env, "audit", "verify", "--json")
    assert verified.returncode == 0 and json.loads(verified.stdout)["ok"], verified.stdout + verified.stderr
    assert (data_dir / "audit.key").read_bytes().strip() == audit_key.read_bytes().strip()
    assert oct((data_dir / "audit.key").stat().st_mode & 0o777) == "0o600"

    with pytest.raises(BackupError, match="not empty"):
        restore_backup(target, archive, "test", audit_key)


def _edit_a_row(folder: Path) -> None:
    """An alert's person changed in the database copy, and its digest rewritten in the manifest to match."""
    database = folder / "database.sqlite3"
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alerts SET person_name = 'Someone Else'"))
    engine.dispose()
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["members"]["database.sqlite3"]["sha256"] = hashlib.sha256(database.read_bytes()).hexdigest()
    manifest["members"]["database.sqlite3"]["bytes"] = database.stat().st_size
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))


def _tables(url: str) -> list[str]:
    if url.startswith("sqlite") and not Path(normalise_url(url).database or "").exists():
        return []
    engine = make_engine(normalise_url(url))
    try:
        with engine.connect() as connection:
            return sa.inspect(connection).get_table_names()
    finally:
        engine.dispose()


def test_a_backup_from_an_older_schema_is_migrated_when_restored(tmp_path: Path) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory

    from openlfr.store.db import MIGRATIONS_DIR, _alembic_config

    old = Settings(data_dir=tmp_path / "old")
    old.data_dir.mkdir()
    engine = make_engine(normalise_url(old.resolved_database_url()))
    with engine.connect() as connection:
        command.upgrade(_alembic_config(connection), "0010_coverage")  # the schema one version back
        connection.commit()
    # Made as this version's backup would be, less its audit entry (this schema's log has no clock column yet).
    archive, manifest, _ = write_archive(Store(engine), old, audit_log.audit_key(old), tmp_path / "old.tar")
    engine.dispose()
    assert manifest["schema_revisions"] == ["0010_coverage"]

    new = Settings(data_dir=tmp_path / "new", database_url=None)
    restored = restore_backup(new, archive, "test", old.data_dir / "audit.key")
    assert restored.migrated_from == ["0010_coverage"]
    heads = ScriptDirectory(str(MIGRATIONS_DIR)).get_heads()
    assert sorted(row["version_num"] for row in _rows(new.resolved_database_url(), "alembic_version")) == sorted(heads)
    assert "0010_coverage" not in heads
    assert [row["action"] for row in _rows(new.resolved_database_url(), "audit_log")] == ["backup.restored"]
    with pytest.raises(BackupError, match="not empty"):
        restore_backup(new, archive, "test")


def test_init_makes_a_new_installation_once(
    monkeypatch: pytest.MonkeyPatch, isolated_data_dir: Path, tmp_path: Path
) -> None:
    from openlfr.cli.main import app

    configure(monkeypatch)
    secret = tmp_path / "admin-password"
    secret.write_text("plinth-quarry-omnibus-77\n")
    first = CliRunner().invoke(app, ["init", "--admin", "chief", "--password-file", str(secret)])
    assert first.exit_code == 0, first.output
    for name in ("audit.key", "camera.key", "openlfr.db"):
        assert oct((isolated_data_dir / name).stat().st_mode & 0o777) == "0o600", name
    users = _rows(f"sqlite:///{isolated_data_dir / 'openlfr.db'}", "users")
    assert [(u["username"], u["role"]) for u in users] == [("chief", "admin")]
    assert "plinth" not in json.dumps(users, default=str)  # only its argon2 hash is kept
    entries = _rows(f"sqlite:///{isolated_data_dir / 'openlfr.db'}", "audit_log")
    assert [e["action"] for e in entries] == ["user.create"]

    again = CliRunner().invoke(app, ["init", "--admin", "deputy"], input="another-quarry-omnibus-78\n")
    assert isinstance(again.exception, OpenLFRError) and "administrator exists" in str(again.exception)
    weak = CliRunner().invoke(app, ["init"], input="password\n")
    assert isinstance(weak.exception, OpenLFRError)
