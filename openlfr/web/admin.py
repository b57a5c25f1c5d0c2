"""Administration and oversight: the audit log and its anchor, the accounts, the console's settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from openlfr.alerts import outbox
from openlfr.api.deps import (
    DB,
    AdminPrincipal,
    AuditReaderPrincipal,
    AuditReaderWrite,
    server,
)
from openlfr.governance.audit import parse_anchor
from openlfr.governance.passwords import MIN_CHARS as MIN_PASSWORD_CHARS
from openlfr.services import audit_log, console
from openlfr.store.governance_models import AuditEntry, User
from openlfr.web import lists, paging
from openlfr.web.render import render

router = APIRouter(include_in_schema=False)


@router.get("/audit")
def audit_page(
    request: Request,
    principal: AuditReaderPrincipal,
    db: DB,
    actor: Annotated[str, Query(max_length=64)] = "",
    action: Annotated[str, Query(max_length=64)] = "",
    target: Annotated[str, Query(max_length=200)] = "",
    since: Annotated[str, Query(alias="from", max_length=40)] = "",
    until: Annotated[str, Query(alias="to", max_length=40)] = "",
    size: Annotated[int, Query(ge=1, le=paging.MAX_PAGE)] = paging.DEFAULT_SIZE,
    before: Annotated[int | None, Query(ge=1, le=2**31)] = None,
    after: Annotated[int | None, Query(ge=0, le=2**31)] = None,
) -> HTMLResponse:
    """The log a page at a time, newest first, filtered by who, what, on what and when; with links to export
    what is shown (``GET /api/audit/export``, audited)."""
    problems: list[str] = []
    start, stop = paging.moment(since, "From", problems), paging.moment(until, "To", problems)
    where = audit_log.AuditFilter(
        actor=lists.visible(actor, "Who", problems),
        action=lists.visible(action, "Action", problems),
        target=lists.visible(target, "Target", problems),
        since=start,
        until=stop,
    )
    times = {"from": paging.form_time(start) or since.strip(), "to": paging.form_time(stop) or until.strip()}
    shown = {"actor": where.actor, "action": where.action, "target": where.target, **times}
    kept = {**shown, "size": size if size != paging.DEFAULT_SIZE else None}
    page = paging.keyed(
        db,
        audit_log.entries_query(where),
        AuditEntry.seq,
        lambda entry: entry.seq,
        size,
        before,
        after,
        lambda cursor: paging.link("/audit", {**kept, **cursor}),
    )
    exports = {f: paging.link("/api/audit/export", {"format": f, **where.as_dict()}) for f in audit_log.EXPORT_FORMATS}
    verdict = audit_log.verify(db, server(request).audit_key)
    return render(
        request,
        "audit.html",
        principal,
        page=page,
        shown=shown,
        size=paging.page_size(size),
        sizes=paging.PAGE_SIZES,
        problems=problems,
        filtered=bool(where.as_dict()),
        exports=exports,
        verdict=verdict,
        details=audit_log.readable_details,
    )


@router.get("/audit/anchor")
def audit_anchor_page(
    request: Request, write: AuditReaderWrite, anchor: Annotated[str, Query(max_length=200)] = ""
) -> HTMLResponse:
    """The log's head to keep outside the system (``openlfr audit anchor``), and a check of the chain; with an
    anchor kept earlier, also that its entry is still there (``audit verify --anchor``), audited as the API's
    check is."""
    db, key = write.db, write.ctx.key
    head = audit_log.current_anchor(db)
    head_at = None if head is None else db.scalar(select(AuditEntry.at).where(AuditEntry.seq == head[0]))
    verdict = audit_log.verify(db, key)
    given, problem, checked = anchor.strip(), "", None
    if given:
        try:
            kept = parse_anchor(given)
        except ValueError as exc:
            problem = str(exc)
        else:
            checked = audit_log.verify(db, key, kept) if verdict.ok else verdict
            details = {"ok": checked.ok, "entries": checked.entries, "anchor": audit_log.anchor_text(kept)}
            write.ctx.audit(db, "audit.verify", "audit_log", details)
    return render(
        request,
        "audit_anchor.html",
        write.principal,
        status=400 if problem else 200,
        head=None if head is None else audit_log.anchor_text(head),
        head_at=head_at,
        verdict=verdict,
        given=given,
        problem=problem,
        checked=checked,
    )


@router.get("/users")
def users_page(request: Request, principal: AdminPrincipal, db: DB) -> HTMLResponse:
    users = db.scalars(select(User).order_by(User.username)).all()
    return render(request, "users.html", principal, users=users, min_password=MIN_PASSWORD_CHARS)


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
        sinks=settings.sinks,
        sink_health=outbox.sink_health(db, settings.sinks),  # a sink that keeps failing is shown here
    )
