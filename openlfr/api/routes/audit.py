"""The audit log: its entries, newest first and filtered; an export of them for auditors (CSV or JSON lines,
itself audited); and a check of the whole chain (the check is itself audited)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BeforeValidator

from openlfr.api.deps import DB, AuditReaderPrincipal, AuditReaderWrite, server
from openlfr.api.patterns import VISIBLE_QUERY as VISIBLE
from openlfr.api.schemas import EARLIEST_TIME, LATEST_TIME, AuditEntryOut, VerdictOut
from openlfr.clock import utc_now
from openlfr.errors import InvalidTime
from openlfr.services import audit_log
from openlfr.services.audit_log import AuditFilter
from openlfr.store.governance_models import AuditEntry
from openlfr.text import visible_text

router = APIRouter(prefix="/api", tags=["audit"])

MATCH = "exactly, or as a prefix when it ends in *"
ISO_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T.*")


def _iso_time(value: object) -> object:
    # As the document says (format: date-time): pydantic alone would also read a number as a Unix time.
    if isinstance(value, str) and not ISO_TIME.fullmatch(value):
        raise ValueError("a time is written YYYY-MM-DDTHH:MM:SS with its zone (Z or +01:00)")
    return value


Moment = Annotated[AwareDatetime | None, BeforeValidator(_iso_time)]


def _in_calendar(value: datetime | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        raise InvalidTime(f"'{name}' is outside the calendar once converted to UTC") from None
    if not EARLIEST_TIME <= in_utc < LATEST_TIME:
        raise InvalidTime(f"'{name}' must be between 1970 and 2999 (UTC)")
    return in_utc


def audit_filter(
    actor: Annotated[str, Query(max_length=64, description=f"who acted ({MATCH})", json_schema_extra=VISIBLE)] = "",
    action: Annotated[
        str, Query(max_length=64, description=f"the action, e.g. deployment.* ({MATCH})", json_schema_extra=VISIBLE)
    ] = "",
    target: Annotated[
        str, Query(max_length=200, description=f"what it was done to ({MATCH})", json_schema_extra=VISIBLE)
    ] = "",
    since: Annotated[Moment, Query(alias="from", description="entries at or after this time")] = None,
    until: Annotated[Moment, Query(alias="to", description="entries at or before this time")] = None,
) -> AuditFilter:
    """The entries a reader asks for (``services.audit_log.AuditFilter``), each value checked under its name."""
    texts = {
        name: visible_text(value.strip(), f"'{name}'")
        for name, value in (("actor", actor), ("action", action), ("target", target))
    }
    return AuditFilter(**texts, since=_in_calendar(since, "from"), until=_in_calendar(until, "to"))


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
