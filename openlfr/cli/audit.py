"""``openlfr audit ...`` (verify the chain, print its anchor) and ``openlfr retention run``."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from openlfr.cli.common import get_settings
from openlfr.cli.help_text import App
from openlfr.errors import OpenLFRError

audit_app = App(help="The tamper-evident audit log.", no_args_is_help=True)
retention_app = App(help="Retention: destroy what is due now.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
    app.add_typer(retention_app, name="retention")


@audit_app.command("verify")
def audit_verify(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    anchor: Annotated[
        str | None, typer.Option(help="SEQ:HASH printed earlier by `openlfr audit anchor`: that entry must remain.")
    ] = None,
) -> None:
    """Check the audit log's hash chain; name the first entry altered, removed, inserted or dated
    before its predecessor. Exit 1 if broken."""
    from openlfr.governance.audit import parse_anchor
    from openlfr.services import audit_log
    from openlfr.store import open_store

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
    from openlfr.services import audit_log
    from openlfr.store import open_store

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
    from openlfr.services.retention import enforce_once
    from openlfr.store import open_store

    settings = get_settings()
    store = open_store(settings)
    try:
        report = enforce_once(store, settings)
    finally:
        store.close()
    typer.echo(report.summary())
