"""The published record: one deployment's counts, decisions and outcomes, or every deployment of a period; as
JSON, or as a CSV export (an export is audited)."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BeforeValidator

from openlfr.api import answers
from openlfr.api.deps import DB, AnyoneWrite, AnyPrincipal
from openlfr.api.patterns import VISIBLE_QUERY
from openlfr.governance.deployments import Kind
from openlfr.governance.records import DeploymentRecord, records_csv
from openlfr.services import records
from openlfr.services.deployments import get_deployment
from openlfr.services.listings import DeploymentFilter
from openlfr.text import visible_text

router = APIRouter(prefix="/api", tags=["records"])
ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_day(value: object) -> object:
    # As the document says (format: date): pydantic alone would also read a number as a Unix time.
    if isinstance(value, str) and not ISO_DAY.fullmatch(value):
        raise ValueError("a day is written YYYY-MM-DD")
    return value


Day = Annotated[date | None, BeforeValidator(_iso_day)]


def record_filter(
    kind: Annotated[Kind | None, Query(description="deployments of this kind only")] = None,
    place: Annotated[
        str,
        Query(
            max_length=300, description="deployments whose place holds this, any case", json_schema_extra=VISIBLE_QUERY
        ),
    ] = "",
) -> DeploymentFilter:
    """The deployments of a period a reader asks for, as the records page filters them."""
    return DeploymentFilter(kind=kind.value if kind else "", place=visible_text(place.strip(), "'place'"))


Filtered = Annotated[DeploymentFilter, Depends(record_filter)]


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
    _: AnyPrincipal, db: DB, where: Filtered, since: Day = None, until: Day = None
) -> list[DeploymentRecord]:
    start, stop = records.period(since, until)
    return records.records_between(db, start, stop, where)


@router.get("/records.csv", response_class=Response, responses=answers.CSV)
def period_records_csv(write: AnyoneWrite, where: Filtered, since: Day = None, until: Day = None) -> Response:
    start, stop = records.period(since, until)
    rows = records.records_between(write.db, start, stop, where)
    period = {"since": start.date().isoformat(), "until": stop.date().isoformat()}
    chosen = {"kind": where.kind, "place": where.place}
    write.ctx.audit(write.db, "export.records", "deployments", period | {k: v for k, v in chosen.items() if v})
    return answers.csv(records_csv(rows), f"deployments-{start:%Y%m%d}-{stop:%Y%m%d}.csv")
