"""The audit log: its entries, newest first, and a check of the whole chain (the check is itself audited)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from openlfr.api.deps import DB, AuditReaderPrincipal, AuditReaderWrite
from openlfr.api.schemas import AuditEntryOut, VerdictOut
from openlfr.services import audit_log
from openlfr.store.governance_models import AuditEntry

router = APIRouter(prefix="/api", tags=["audit"])


@router.get("/audit")
def audit_entries(
    _: AuditReaderPrincipal,
    db: DB,
    before: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[AuditEntryOut]:
    query = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)
    if before is not None:
        query = query.where(AuditEntry.seq < before)
    return AuditEntryOut.each(db.scalars(query))


@router.get("/audit/verify")
def audit_verify(write: AuditReaderWrite) -> VerdictOut:
    verdict = audit_log.verify(write.db, write.ctx.key)
    write.ctx.audit(write.db, "audit.verify", "audit_log", {"ok": verdict.ok, "entries": verdict.entries})
    return VerdictOut.model_validate(verdict.as_dict())
