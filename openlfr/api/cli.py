"""CLI of the operator server: ``openlfr serve``, ``openlfr worker``, ``openlfr users ...``, ``openlfr audit verify``,
``openlfr retention run``. ``register(app)`` adds them to the front door."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from sqlalchemy import select
from sqlalchemy.orm import Session

from openlfr.errors import OpenLFRError
from openlfr.governance.audit import parse_anchor
from openlfr.governance.roles import parse_role
from openlfr.services import accounts, audit_log
from openlfr.services.context import Context
from openlfr.services.retention import enforce_once
from openlfr.settings import get_settings
from openlfr.store import open_store
from openlfr.store.governance_models import User

users_app = typer.Typer(
    help="Accounts of the operator server (admin, authoriser, operator, auditor).", no_args_is_help=True
)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
retention_app = typer.Typer(help="Retention: destroy what is due now.", no_args_is_help=True)


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default from settings: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings: 8400).")] = None,
    pipelines: Annotated[
        bool, typer.Option(help="Run the live pipelines in this process (else leave them to `openlfr worker`).")
    ] = True,
) -> None:
    """Run the operator server: JSON API (/docs), console, retention, and the live pipelines of live deployments."""
    import uvicorn

    from openlfr.server import create_app

    settings = get_settings()
    app = create_app(settings, pipelines=pipelines)
    uvicorn.run(
        app,
        host=host or settings.server_host,
        port=port or settings.server_port,
        log_level="warning",
        access_log=False,  # request lines can carry names and ids; the audit log is the record
        proxy_headers=False,
    )


def worker() -> None:
    """Run the live pipelines of live deployments without the web server (alerts meet the server in the database)."""
    import signal
    import threading

    from openlfr.server import run_worker

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    typer.echo("worker running; Ctrl-C to stop", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        run_worker(get_settings(), stop)


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Argument(help="Lower-case letters, digits, '.', '_' or '-'.")],
    role: Annotated[str, typer.Option(help="admin, authoriser, operator or auditor.")],
    display_name: Annotated[str, typer.Option("--name", help="The person's name as shown.")] = "",
    password_stdin: Annotated[bool, typer.Option(help="Read the password from standard input.")] = False,
) -> None:
    """Create an account. The password is asked for (or read from stdin); it is stored only as an argon2 hash."""
    chosen = parse_role(role)
    accounts.validate_username(username)
    password = _new_password(password_stdin)
    with _keyboard() as (db, ctx):
        name = accounts.create_account(db, ctx, username, password, chosen, display_name).username
    typer.echo(f"created {chosen.value} {name}")


@users_app.command("list")
def users_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The accounts and their roles."""
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
    for row in rows:
        typer.echo(
            f"{row['username']:<24} {row['role']:<11} {'active' if row['active'] else 'disabled'}  {row['name']}"
        )


@contextmanager
def _keyboard() -> Iterator[tuple[Session, Context]]:
    """A database session (committed at the end) and the audit context of the person at the keyboard."""
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
    with _keyboard() as (db, ctx):
        yield db, accounts.find_account(db, username), ctx


def _new_password(password_stdin: bool) -> str:
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("new password", hide_input=True, confirmation_prompt=True)
    accounts.validate_password(password)
    return password


@users_app.command("token")
def users_token(
    username: Annotated[str, typer.Argument()],
    days: Annotated[float, typer.Option(min=0.01, max=366, help="How long the token lasts.")] = 30.0,
) -> None:
    """Issue an API token for a user (``Authorization: Bearer TOKEN``); printed once, stored only as a hash."""
    with _account(username) as (db, user, ctx):
        token = accounts.issue_token(db, ctx, user, days)
    typer.echo(token)


@users_app.command("disable")
def users_disable(username: Annotated[str, typer.Argument()]) -> None:
    """Disable an account: it cannot log in, and its sessions and API tokens end now."""
    with _account(username) as (db, user, ctx):
        ended = accounts.disable(db, ctx, user)
    typer.echo(f"disabled {user.username}; {ended} session(s) and token(s) ended")


@users_app.command("enable")
def users_enable(username: Annotated[str, typer.Argument()]) -> None:
    """Let a disabled account log in again."""
    with _account(username) as (db, user, ctx):
        accounts.enable(db, ctx, user)
    typer.echo(f"enabled {user.username}")


@users_app.command("role")
def users_role(
    username: Annotated[str, typer.Argument()],
    role: Annotated[str, typer.Option(help="admin, authoriser, operator or auditor.")],
) -> None:
    """Give an account another role; its sessions and API tokens end (they carry the old role)."""
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
    password = _new_password(password_stdin)
    with _account(username) as (db, user, ctx):
        ended = accounts.reset_password(db, ctx, user, password)
    typer.echo(f"new password set for {user.username}; {ended} session(s) and token(s) ended")


@audit_app.command("verify")
def audit_verify(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    anchor: Annotated[
        str | None, typer.Option(help="SEQ:HASH printed earlier by `openlfr audit anchor`: that entry must remain.")
    ] = None,
) -> None:
    """Check the audit log's hash chain; name the first entry altered, removed or inserted. Exit 1 if broken."""
    try:
        anchored = parse_anchor(anchor) if anchor is not None else None
    except ValueError as exc:
        raise OpenLFRError(str(exc)) from exc
    settings = get_settings()
    store = open_store(settings)
    try:
        with store.session() as db:
            verdict = audit_log.verify(db, audit_log.audit_key(settings), anchored)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(verdict.as_dict()))
    else:
        typer.echo(verdict.message)
    if not verdict.ok:
        raise typer.Exit(1)


@audit_app.command("anchor")
def audit_anchor() -> None:
    """Print the log's head as SEQ:HASH. Keep it outside the database; `audit verify --anchor` then proves that
    nothing up to that entry was cut off the end, even by someone who can rewrite the database."""
    settings = get_settings()
    store = open_store(settings)
    try:
        with store.session() as db:
            head = audit_log.current_anchor(db)
    finally:
        store.close()
    if head is None:
        raise OpenLFRError("the audit log is empty: nothing to anchor yet")
    typer.echo(f"{head[0]}:{head[1]}")


@retention_app.command("run")
def retention_run() -> None:
    """Close finished deployment windows; destroy the snapshots, probe images and expired watchlist entries due now."""
    settings = get_settings()
    store = open_store(settings)
    try:
        report = enforce_once(store, settings)
    finally:
        store.close()
    typer.echo(report.summary())


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("worker")(worker)
    app.add_typer(users_app, name="users")
    app.add_typer(audit_app, name="audit")
    app.add_typer(retention_app, name="retention")
