"""The published record: one deployment's counts, decisions and outcomes, or every deployment of a period; as
JSON, or as a CSV export (an export is audited)."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Response

from openlfr.api import answers
from openlfr.api.deps import DB, AnyoneWrite, AnyPrincipal
from openlfr.governance.records import DeploymentRecord, records_csv
from openlfr.services import records
from openlfr.services.deployments import get_deployment

router = APIRouter(prefix="/api", tags=["records"])


@router.get("/deployments/{deployment_id}/record")
def deployment_record(deployment_id: int, _: AnyPrincipal, db: DB) -> DeploymentRecord:
    return records.record_of(db, get_deployment(db, deployment_id))


@router.get("/deployments/{deployment_id}/record.csv", response_class=Response, responses=answers.CSV)
def deployment_record_csv(deployment_id: int, write: AnyoneWrite) -> Response:
    record = records.record_of(write.db, get_deployment(write.db, deployment_id))
    write.ctx.audit(write.db, "export.record", f"deployment:{deployment_id}", {"format": "csv"})
    return answers.csv(records_csv([record]), f"deployment-{deployment_id}.csv")


@router.get("/records")
def period_records(
    _: AnyPrincipal, db: DB, since: date | None = None, until: date | None = None
) -> list[DeploymentRecord]:
    start, stop = records.period(since, until)
    return records.records_between(db, start, stop)


@router.get("/records.csv", response_class=Response, responses=answers.CSV)
def period_records_csv(write: AnyoneWrite, since: date | None = None, until: date | None = None) -> Response:
    start, stop = records.period(since, until)
    rows = records.records_between(write.db, start, stop)
    period = {"since": start.date().isoformat(), "until": stop.date().isoformat()}
    write.ctx.audit(write.db, "export.records", "deployments", period)
    return answers.csv(records_csv(rows), f"deployments-{start:%Y%m%d}-{stop:%Y%m%d}.csv")
