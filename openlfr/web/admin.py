"""Administration and oversight: the audit log, the accounts, the console's settings, the watchlists."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from openlfr.api.deps import DB, AdminPrincipal, AuditReaderPrincipal, DrafterPrincipal, server
from openlfr.services import audit_log, console, watchlists
from openlfr.store.governance_models import AuditEntry, User
from openlfr.store.models import CATEGORY_VALUES
from openlfr.web.render import render

router = APIRouter(include_in_schema=False)


@router.get("/audit")
def audit_page(request: Request, principal: AuditReaderPrincipal, db: DB) -> HTMLResponse:
    entries = db.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(300)).all()
    verdict = audit_log.verify(db, server(request).audit_key)
    return render(request, "audit.html", principal, entries=entries, verdict=verdict)


@router.get("/users")
def users_page(request: Request, principal: AdminPrincipal, db: DB) -> HTMLResponse:
    users = db.scalars(select(User).order_by(User.username)).all()
    return render(request, "users.html", principal, users=users)


@router.get("/settings")
def settings_page(request: Request, principal: AdminPrincipal, db: DB) -> HTMLResponse:
    settings = server(request).settings
    return render(
        request,
        "settings.html",
        principal,
        values=console.console_settings(db, settings),
        retention={
            "snapshot_hours": settings.snapshot_retention_seconds / 3600,
            "probe_days": settings.probe_retention_seconds / 86400,
        },
    )


@router.get("/watchlists")
def watchlists_page(request: Request, principal: DrafterPrincipal, db: DB) -> HTMLResponse:
    return render(
        request, "watchlists.html", principal, watchlists=watchlists.list_watchlists(db), categories=CATEGORY_VALUES
    )
