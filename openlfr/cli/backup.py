"""``openlfr backup DEST`` and ``openlfr restore SRC`` (openlfr/services/backup.py says what an archive holds)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from openlfr.cli.common import ByOption, get_settings


def register(app: typer.Typer) -> None:
    app.command("backup")(backup)
    app.command("restore")(restore)


def backup(
    dest: Annotated[Path, typer.Argument(metavar="DEST", help="The archive to write (a folder: a dated name in it).")],
    with_keys: Annotated[
        bool, typer.Option("--with-keys", help="Put the audit and camera keys in the archive too (keep it apart!).")
    ] = False,
    by: ByOption = None,
) -> None:
    """Back up the database (while the server runs) and the calibration tables into one signed archive; the keys
    stay out of it unless --with-keys. Audited as backup.created."""
    from openlfr.services.backup import create_backup
    from openlfr.services.context import Context
    from openlfr.store import open_store

    settings = get_settings()
    store = open_store(settings)
    try:
        written, manifest = create_backup(store, Context.local(settings, by), dest, with_keys)
    finally:
        store.close()
    keys = "keys included" if with_keys else "keys NOT included: keep audit.key and camera.key safe apart"
    typer.echo(
        f"backup written to {written} ({manifest['database']}, schema {','.join(manifest['schema_revisions'])}; {keys})"
    )


def restore(
    src: Annotated[Path, typer.Argument(metavar="SRC", exists=True, dir_okay=False, help="An archive `backup` made.")],
    audit_key: Annotated[
        Path | None,
        typer.Option(
            "--audit-key", metavar="FILE", exists=True, dir_okay=False, help="The audit key it was made with."
        ),
    ] = None,
    camera_key: Annotated[
        Path | None,
        typer.Option("--camera-key", metavar="FILE", exists=True, dir_okay=False, help="The camera key of its system."),
    ] = None,
    by: ByOption = None,
) -> None:
    """Restore an archive into an empty database and data directory: refused if it was altered; the schema and the
    audit chain are checked, then migrated to this version. Audited as backup.restored."""
    from openlfr.services.restore import restore_backup

    restored = restore_backup(get_settings(), src, by, audit_key, camera_key)
    migrated = ",".join(restored.migrated_from)
    keys = ", ".join(f"{name} from {origin}" for name, origin in restored.keys_from.items())
    made = f"made {restored.manifest['created_at']} by OpenLFR {restored.manifest['openlfr_version']}"
    typer.echo(f"restored {src} ({made}, schema {migrated})")
    typer.echo(f"audit log verified: {restored.audit_entries} entries; {keys}")
    if restored.keys_from["camera.key"] == "nowhere":
        typer.echo("no camera key: camera URLs with credentials cannot be opened until it is restored (--camera-key)")
