"""``openlfr init``: the first run. The data directory, the audit and camera keys, the database, the first admin."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from openlfr.cli.common import ByOption, get_settings
from openlfr.errors import OpenLFRError


def register(app: typer.Typer) -> None:
    app.command("init")(init)


def init(
    username: Annotated[
        str, typer.Option("--admin", metavar="NAME", help="The first administrator's user name.")
    ] = "admin",
    password_file: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", exists=True, dir_okay=False, help="Read the password from this file (else stdin)."
        ),
    ] = None,
    by: ByOption = None,
) -> None:
    """Set up a new installation: the data directory, the audit key and camera key, the database, and the first
    administrator (password from --password-file or standard input). Refused if an administrator exists."""
    from sqlalchemy import select

    from openlfr.governance.roles import Role
    from openlfr.services import accounts, audit_log, camera_secrets
    from openlfr.services.context import Context
    from openlfr.store import open_store
    from openlfr.store.governance_models import User

    settings = get_settings()
    name = accounts.validate_username(username)
    if password_file is not None:
        password = next(iter(password_file.read_text().splitlines()), "")
    elif sys.stdin.isatty():
        password = typer.prompt(f"password for {name}", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\n")
    accounts.validate_password(password, name)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    audit_log.audit_key(settings)  # made once, mode 0600, unless OPENLFR_AUDIT_KEY gives it
    camera_secrets.camera_key(settings)
    store = open_store(settings)
    try:
        with store.session() as db:
            if db.scalar(select(User.username).where(User.role == Role.ADMIN.value).limit(1)) is not None:
                raise OpenLFRError(f"an administrator exists already in {store.url}: init is for a new installation")
            accounts.create_account(db, Context.local(settings, by), name, password, Role.ADMIN)
        where = store.url
    finally:
        store.close()
    typer.echo(f"initialised: data {settings.data_dir} · database {where} · administrator {name}")
