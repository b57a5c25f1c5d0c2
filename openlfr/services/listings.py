"""The console's long lists as database queries, their filters in SQL: the alert queue (by stage of review,
deployment and camera) and the deployments (by phase, kind and place). The pages order and page them
(``openlfr.web.paging``); nothing here reads more rows than a page shows, the count aside."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, false, or_, select, true
from sqlalchemy.orm import Session

from openlfr.clock import utc
from openlfr.governance.adjudication import Decision
from openlfr.governance.deployments import Kind, Phase, Status
from openlfr.store.alert_models import Alert
from openlfr.store.governance_models import AlertReview, Deployment

# The queue's stages (``governance.adjudication.stage``), and "open" for all but the closed.
OPEN = "open"
STAGES = ("awaiting decision", "awaiting verification", "awaiting outcome", "closed")
QUEUE_STATES = (OPEN, *STAGES, "all")


def stage_condition(stage: str, require_second: bool) -> ColumnElement[bool]:
    """``adjudication.stage(review, require_second) == stage`` as SQL, over ``alerts`` outer-joined to
    ``alert_reviews`` (an alert nobody has acted on has no review row)."""
    confirmed = AlertReview.decision == Decision.CONFIRMED.value
    verified = AlertReview.verified_by.is_not(None) if require_second else true()
    undecided = or_(AlertReview.alert_id.is_(None), AlertReview.decision.is_(None))
    if stage == "awaiting decision":
        return undecided
    if stage == "awaiting verification":
        return and_(confirmed, AlertReview.verified_by.is_(None)) if require_second else false()
    if stage == "awaiting outcome":
        return and_(confirmed, verified, AlertReview.outcome.is_(None))
    if stage == "closed":
        decided = AlertReview.decision.is_not(None)
        return and_(
            decided,
            or_(AlertReview.decision != Decision.CONFIRMED.value, and_(verified, AlertReview.outcome.is_not(None))),
        )
    if stage == OPEN:
        return or_(*(stage_condition(s, require_second) for s in STAGES[:-1]))
    raise ValueError(f"no stage {stage!r}")


@dataclass(frozen=True)
class QueueFilter:
    state: str = OPEN  # one of QUEUE_STATES
    deployment_id: int | None = None
    camera: str = ""

    def as_params(self) -> dict[str, Any]:
        return {
            "state": "" if self.state == OPEN else self.state,
            "deployment": self.deployment_id,
            "camera": self.camera,
        }


def queue_query(where: QueueFilter, require_second: bool, state: str | None = None) -> Select[Alert, AlertReview]:
    """The alerts of deployments (with their reviews, None where nobody acted yet) ``where`` asks for, in
    ``state`` if given instead of its own, newest first (by when committed: an indexed column)."""
    stage = state or where.state
    query = (
        select(Alert, AlertReview)
        .outerjoin(AlertReview, AlertReview.alert_id == Alert.id)
        .where(Alert.deployment_id.is_not(None))
        .order_by(Alert.created_at.desc(), Alert.id.desc())
    )
    if stage != "all":
        query = query.where(stage_condition(stage, require_second))
    if where.deployment_id is not None:
        query = query.where(Alert.deployment_id == where.deployment_id)
    if where.camera:
        query = query.where(Alert.camera == where.camera)
    return query


def deployments_with_alerts(db: Session, limit: int = 500) -> list[tuple[int, str]]:
    """(id, name) of the deployments that raised an alert, latest window first: the queue's deployment choice."""
    raised = exists().where(Alert.deployment_id == Deployment.id)
    rows = db.execute(
        select(Deployment.id, Deployment.name)
        .where(raised)
        .order_by(Deployment.starts_at.desc(), Deployment.id.desc())
        .limit(limit)
    )
    return [(int(r.id), str(r.name)) for r in rows]


PHASES = tuple(p.value for p in Phase)
KINDS = tuple(k.value for k in Kind)


def phase_condition(phase: str, moment: datetime) -> ColumnElement[bool]:
    """``governance.deployments.phase(row, moment) == phase`` as SQL."""
    now = utc(moment)
    status = Deployment.status
    if phase == Phase.DRAFT.value:
        return and_(
            status == Status.DRAFT.value, or_(Deployment.urgent_until.is_(None), Deployment.urgent_until <= now)
        )
    if phase == Phase.URGENT.value:
        return and_(status == Status.DRAFT.value, Deployment.urgent_until > now)
    if phase == Phase.CANCELLED.value:
        return status == Status.CANCELLED.value
    if phase == Phase.ENDED.value:
        return or_(status == Status.ENDED.value, and_(status == Status.AUTHORISED.value, Deployment.ends_at <= now))
    authorised_open = and_(status == Status.AUTHORISED.value, Deployment.ends_at > now)
    if phase == Phase.SCHEDULED.value:
        return and_(authorised_open, Deployment.starts_at > now)
    if phase == Phase.LIVE.value:
        return and_(authorised_open, Deployment.starts_at <= now)
    raise ValueError(f"no phase {phase!r}")


@dataclass(frozen=True)
class DeploymentFilter:
    phase: str = ""  # one of PHASES, or "" for every phase
    kind: str = ""  # one of KINDS, or ""
    place: str = ""  # part of the place's name, any case

    def as_params(self) -> dict[str, Any]:
        return {"state": self.phase, "kind": self.kind, "place": self.place}

    def conditions(self, moment: datetime) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.phase:
            found.append(phase_condition(self.phase, moment))
        if self.kind:
            found.append(Deployment.kind == self.kind)
        if self.place:
            found.append(Deployment.place.icontains(self.place, autoescape=True))
        return found


def deployments_query(where: DeploymentFilter, moment: datetime) -> Select[Deployment]:
    """The deployments ``where`` asks for, the latest window first (as ``services.deployments.all_deployments``)."""
    return (
        select(Deployment).where(*where.conditions(moment)).order_by(Deployment.starts_at.desc(), Deployment.id.desc())
    )
