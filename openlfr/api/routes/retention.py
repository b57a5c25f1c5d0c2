"""Retention on demand: what the server's loop would destroy now, destroyed now (and audited)."""

from __future__ import annotations

from fastapi import APIRouter

from openlfr.api.deps import AdminWrite
from openlfr.services.retention import PurgeReport, enforce_retention, policy_of

router = APIRouter(prefix="/api", tags=["retention"])


@router.post("/retention/run")
def retention_run(write: AdminWrite) -> PurgeReport:
    write.ctx.audit(write.db, "retention.run", "retention", {})
    return enforce_retention(write.db, write.ctx, policy_of(write.ctx.settings))
