"""Alerts of deployments and their human review: the queue, one alert, its images, and the decision, the second
operator's check, the outcome, an authoriser's hold."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.orm import Session

from openlfr.api import answers
from openlfr.api.deps import DB, AlertViewerPrincipal, AuthoriserWrite, OperatorWrite, Write, server
from openlfr.api.schemas import AlertOut, DecisionIn, Joined, OutcomeIn, ReasonIn, ReviewOut
from openlfr.governance import adjudication
from openlfr.services import alert_source, reviews
from openlfr.services.console import require_second_verifier
from openlfr.store.alert_models import Alert
from openlfr.store.governance_models import AlertReview

router = APIRouter(prefix="/api", tags=["alerts"])


def alert_out(db: Session, alert: Alert, review: AlertReview, require_second: bool) -> AlertOut:
    stage = adjudication.stage(review, require_second)
    return AlertOut.model_validate(Joined(review, alert_source.facts(db, alert, review), stage=stage))


def review_out(write: Write, review: AlertReview) -> ReviewOut:
    stage = adjudication.stage(review, require_second_verifier(write.db, write.ctx.settings))
    return ReviewOut.model_validate(Joined(review, stage=stage))


@router.get("/alerts")
def list_alerts(
    request: Request,
    _: AlertViewerPrincipal,
    db: DB,
    open_only: bool = False,
    deployment: int | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AlertOut]:
    second = require_second_verifier(db, server(request).settings)
    pairs = reviews.alerts_with_reviews(db, deployment, limit=5000 if open_only else limit)
    if open_only:
        pairs = [(a, r) for a, r in pairs if adjudication.stage(r, second) != "closed"][:limit]
    return [alert_out(db, a, r, second) for a, r in pairs]


@router.get("/alerts/{alert_id}")
def get_alert(alert_id: int, request: Request, _: AlertViewerPrincipal, db: DB) -> AlertOut:
    alert, review = reviews.alert_and_review(db, alert_id)
    return alert_out(db, alert, review, require_second_verifier(db, server(request).settings))


@router.get("/alerts/{alert_id}/probe.jpg", response_class=Response, responses=answers.JPEG)
def alert_probe(alert_id: int, _: AlertViewerPrincipal, db: DB) -> Response:
    return answers.jpeg(alert_source.probe_jpeg(db, alert_id), "probe image")


@router.get("/alerts/{alert_id}/reference.jpg", response_class=Response, responses=answers.JPEG)
def alert_reference(alert_id: int, _: AlertViewerPrincipal, db: DB) -> Response:
    return answers.jpeg(alert_source.reference_jpeg(db, alert_id), "reference image")


@router.post("/alerts/{alert_id}/decision")
def decide(alert_id: int, body: DecisionIn, write: OperatorWrite) -> ReviewOut:
    return review_out(write, reviews.decide(write.db, write.ctx, alert_id, body.decision))


@router.post("/alerts/{alert_id}/verify")
def verify(alert_id: int, write: OperatorWrite) -> ReviewOut:
    return review_out(write, reviews.verify(write.db, write.ctx, alert_id))


@router.post("/alerts/{alert_id}/outcome")
def outcome(alert_id: int, body: OutcomeIn, write: OperatorWrite) -> ReviewOut:
    return review_out(write, reviews.record_outcome(write.db, write.ctx, alert_id, body.outcome))


@router.post("/alerts/{alert_id}/hold")
def hold(alert_id: int, body: ReasonIn, write: AuthoriserWrite) -> ReviewOut:
    return review_out(write, reviews.hold(write.db, write.ctx, alert_id, body.reason))
