"""The audit log: its entries, newest first and filtered; an export of them for auditors (CSV or JSON lines,
itself audited); and a check of the whole chain (the check is itself audited)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from openlfr.api.deps import DB, AuditReaderPrincipal, AuditReaderWrite, server
from openlfr.api.schemas import AuditEntryOut, Identifier, UtcTime, VerdictOut
from openlfr.clock import utc_now
from openlfr.services import audit_log
from openlfr.services.audit_log import AuditFilter
from openlfr.store.governance_models import AuditEntry

router = APIRouter(prefix="/api", tags=["audit"])

MATCH = "exactly, or as a prefix when it ends in *"


def audit_filter(
    actor: Annotated[str, Query(max_length=64, description=f"who acted ({MATCH})"), Identifier] = "",
    action: Annotated[
        str, Query(max_length=64, description=f"the action, e.g. deployment.* ({MATCH})"), Identifier
    ] = "",
    target: Annotated[str, Query(max_length=200, description=f"what it was done to ({MATCH})"), Identifier] = "",
    since: Annotated[UtcTime | None, Query(alias="from", description="entries at or after this time")] = None,
    until: Annotated[UtcTime | None, Query(alias="to", description="entries at or before this time")] = None,
) -> AuditFilter:
    return AuditFilter(actor=actor.strip(), action=action.strip(), target=target.strip(), since=since, until=until)


Filtered = Annotated[AuditFilter, Depends(audit_filter)]

EXPORT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}
EXPORT_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the entries, oldest first: a CSV file (the details as a JSON cell), or one JSON object a line",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/x-ndjson": {"schema": {"type": "string"}},
        },
    }
}


@router.get("/audit")
def audit_entries(
    _: AuditReaderPrincipal,
    db: DB,
    where: Filtered,
    before: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AuditEntryOut]:
    query = audit_log.entries_query(where).order_by(AuditEntry.seq.desc()).limit(limit)
    if before is not None:
        query = query.where(AuditEntry.seq < before)
    return AuditEntryOut.each(db.scalars(query))


@router.get("/audit/export", response_class=StreamingResponse, responses=EXPORT_ANSWER)
def audit_export(
    request: Request, write: AuditReaderWrite, where: Filtered, format: Literal["csv", "jsonl"] = "csv"
) -> StreamingResponse:
    """The filtered entries for an auditor's own tools, streamed (a long log is never held in memory). The export
    is audited (``export.audit``: the format, the filters and how many entries) before the first line is sent,
    and holds exactly the entries counted then. Entries hold no secrets, so neither does the export."""
    export = audit_log.start_export(write.db, write.ctx, where, format)
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        audit_log.export_lines(server(request).sessions, export),
        media_type=EXPORT_TYPES[format],
        headers={
            "Content-Disposition": f'attachment; filename="audit-{stamp}.{format}"',
            "Cache-Control": "no-store",
            "X-Audit-Entries": str(export.entries),
        },
    )


@router.get("/audit/verify")
def audit_verify(write: AuditReaderWrite) -> VerdictOut:
    verdict = audit_log.verify(write.db, write.ctx.key)
    write.ctx.audit(write.db, "audit.verify", "audit_log", {"ok": verdict.ok, "entries": verdict.entries})
    return VerdictOut.model_validate(verdict.as_dict())
