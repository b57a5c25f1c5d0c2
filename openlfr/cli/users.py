"""``openlfr users ...``: accounts of the operator server, each change audited as the person at the keyboard."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from openlfr.cli.common import JsonOption, get_settings, wide_console
from openlfr.cli.help_text import App
from openlfr.governance.roles import parse_role

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from openlfr.services.context import Context
    from openlfr.store.governance_models import User

# Each command imports the accounts service when it runs (SQLAlchemy and argon2 are slow to load).
users_app = App(help="Accounts of the operator server (admin, authoriser, operator, auditor).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(users_app, name="users")


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Argument(help="Lower-case letters, digits, '.', '_' or '-'.")],
    role: Annotated[str, typer.Option(help="admin, authoriser, operator or auditor.")],
    display_name: Annotated[str, typer.Option("--name", help="The person's name as shown.")] = "",
    password_stdin: Annotated[bool, typer.Option(help="Read the password from standard input.")] = False,
) -> None:
    """Create an account. The password is asked for (or read from stdin); it is stored only as an argon2 hash."""
    from openlfr.services import accounts

    chosen = parse_role(role)
    password = _new_password(password_stdin, accounts.validate_username(username), display_name)
    with _keyboard() as (db, ctx):
        name = accounts.create_account(db, ctx, username, password, chosen, display_name).username
    typer.echo(f"created {chosen.value} {name}")


@users_app.command("list")
def users_list(as_json: JsonOption = False) -> None:
    """The accounts: user name, role, whether they may log in, and the name shown (when it is not the user name)."""
    from sqlalchemy import select

    from openlfr.store import open_store
    from openlfr.store.governance_models import User

    store = open_store(get_settings())
    try:
        with store.session() as db:
            rows = [
                {"username": u.username, "role": u.role, "active": u.active, "name": u.display_name}
                for u in db.scalars(select(User).order_by(User.username))
            ]
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table("user", "role", "status", "name", box=None, pad_edge=False)
    for row in rows:
        username, name = str(row["username"]), str(row["name"])
        table.add_row(
            username, str(row["role"]), "active" if row["active"] else "disabled", "" if name == username else name
        )
    wide_console().print(table)


@contextmanager
def _keyboard() -> Iterator[tuple[Session, Context]]:
    """A database session (committed at the end) and the audit context of the person at the keyboard."""
    from openlfr.services.context import Context
    from openlfr.store import open_store

    settings = get_settings()
    store = open_store(settings)
    try:
        with store.session() as db:
            yield db, Context.local(settings)
    finally:
        store.close()


@contextmanager
def _account(username: str) -> Iterator[tuple[Session, User, Context]]:
    """(database session, the named user, the audit context of the person at the keyboard); commits."""
    from openlfr.services import accounts

    with _keyboard() as (db, ctx):
        yield db, accounts.find_account(db, username), ctx


def _new_password(password_stdin: bool, *names: str) -> str:
    """The new password, refused at once if it breaks the rule for someone with these names (the account's own
    change checks it again, and that it differs from the current one)."""
    from openlfr.services import accounts

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("new password", hide_input=True, confirmation_prompt=True)
    accounts.validate_password(password, *names)
    return password


@users_app.command("token")
def users_token(
    username: Annotated[str, typer.Argument()],
    days: Annotated[float, typer.Option(min=0.01, max=366, help="How long the token lasts.")] = 30.0,
) -> None:
    """Issue an API token for a user (``Authorization: Bearer TOKEN``); printed once, stored only as a hash."""
    from openlfr.services import accounts

    with _account(username) as (db, user, ctx):
        token = accounts.issue_token(db, ctx, user, days)
    typer.echo(token)


@users_app.command("disable")
def users_disable(username: Annotated[str, typer.Argument()]) -> None:
    """Disable an account: it cannot log in, and its sessions and API tokens end now."""
    from openlfr.services import accounts

    with _account(username) as (db, user, ctx):
        ended = accounts.disable(db, ctx, user)
    typer.echo(f"disabled {user.username}; {ended} session(s) and token(s) ended")


@users_app.command("enable")
def users_enable(username: Annotated[str, typer.Argument()]) -> None:
    """Let a disabled account log in again."""
    from openlfr.services import accounts

    with _account(username) as (db, user, ctx):
        accounts.enable(db, ctx, user)
    typer.echo(f"enabled {user.username}")


@users_app.command("role")
def users_role(
    username: Annotated[str, typer.Argument()],
    role: Annotated[str, typer.Option(help="admin, authoriser, operator or auditor.")],
) -> None:
    """Give an account another role; its sessions and API tokens end (they carry the old role)."""
    from openlfr.services import accounts

    chosen = parse_role(role)
    with _account(username) as (db, user, ctx):
        before, _ = accounts.change_role(db, ctx, user, chosen)
    typer.echo(f"{user.username} is now {chosen.value} (was {before})")


@users_app.command("password")
def users_password(
    username: Annotated[str, typer.Argument()],
    password_stdin: Annotated[bool, typer.Option(help="Read the new password from standard input.")] = False,
) -> None:
    """Set a new password for an account; its sessions and API tokens end."""
    from openlfr.services import accounts

    password = _new_password(password_stdin, username)
    with _account(username) as (db, user, ctx):
        ended = accounts.reset_password(db, ctx, user, password)
    typer.echo(f"new password set for {user.username}; {ended} session(s) and token(s) ended")
