"""The published record of deployments: counts, decisions and outcomes, one deployment or a period, each with the
audit anchor of its end (the chain's head then), so the record published proves the log up to then intact."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from openlfr.clock import utc, utc_now
from openlfr.governance import deployments, records
from openlfr.governance.deployments import GovernanceError, Phase
from openlfr.services import audit_log, listings
from openlfr.store.alert_models import Alert
from openlfr.store.governance_models import AlertReview, AuditEntry, Deployment

MAX_PERIOD_DAYS = 3660
# The entries that record a deployment's end, each written after the moment it ended (``end`` and ``cancel``
# stamp the deployment first; a scan's end and a closed window come at or after it).
CLOSING_ACTIONS = ("deployment.end", "deployment.cancel", "deployment.window_closed", "scan.end")


def period(since: date | None, until: date | None) -> tuple[datetime, datetime]:
    """[start, stop) of the days ``since`` to ``until`` inclusive; by default the month so far."""
    today = utc_now().date()
    start = since or today.replace(day=1)
    stop = until or today
    if stop < start:
        raise GovernanceError("the period ends before it starts")
    if (stop - start).days > MAX_PERIOD_DAYS:
        raise GovernanceError("a period is at most ten years")
    return datetime.combine(start, time.min, UTC), datetime.combine(stop + timedelta(days=1), time.min, UTC)


def end_anchor(db: Session, row: Deployment, phase: Phase) -> str:
    """The audit chain's head as of the deployment's end ("SEQ:HASH"), once it has ended or been cancelled; ""
    before that, or if nothing had been audited by then."""
    end = deployments.effective_end(row)
    if phase not in (Phase.ENDED, Phase.CANCELLED) or end is None:
        return ""
    closing = db.scalar(
        select(func.min(AuditEntry.seq)).where(
            AuditEntry.action.in_(CLOSING_ACTIONS), AuditEntry.target == f"deployment:{row.id}"
        )
    )
    head = audit_log.anchor_as_of(db, end, written_after=closing)
    return "" if head is None else audit_log.anchor_text(head)


def record_of(db: Session, row: Deployment) -> records.DeploymentRecord:
    phase = deployments.phase(row, utc_now())
    reviews = db.execute(
        select(AlertReview.decision, AlertReview.verified_by, AlertReview.outcome)
        .select_from(Alert)
        .outerjoin(AlertReview, AlertReview.alert_id == Alert.id)
        .where(Alert.deployment_id == row.id)
    ).all()
    return records.build_record(
        row.id,
        row.name,
        row.place,
        row.purpose,
        phase.value,
        row.starts_at,
        row.ends_at,
        deployments.effective_end(row),
        row.watchlist_size,
        row.faces_seen,
        [(r[0], r[1], r[2]) for r in reviews],
        audit_anchor=end_anchor(db, row, phase),
        kind=row.kind,
        coverage=row.coverage,
        sinks=list(row.sinks or []),
    )


def period_query(start: datetime, stop: datetime) -> Select[Deployment]:
    """The deployments that started in [start, stop) and have a record: authorised ones only (drafts never ran),
    and the urgent retrospective searches, which ran before their authorisation (and count if it never came)."""
    ran = Deployment.authorised_by.is_not(None) | Deployment.urgent_until.is_not(None)
    return (
        select(Deployment)
        .where(Deployment.starts_at >= utc(start), Deployment.starts_at < utc(stop), ran)
        .order_by(Deployment.starts_at, Deployment.id)
    )


def records_between(
    db: Session, start: datetime, stop: datetime, where: listings.DeploymentFilter | None = None
) -> list[records.DeploymentRecord]:
    """Records of the deployments of ``period_query``, only those of ``where``'s kind and place where given."""
    query = period_query(start, stop)
    if where is not None:
        query = query.where(*where.conditions(utc_now()))
    return [record_of(db, row) for row in db.scalars(query).all()]
