"""Alerts of deployments and their human review: the queue, one alert, its images (the probe, the track's best
looks, the person's reference pictures), and the decision, the second operator's check, the outcome (each with an
optional note), the undo of one's own latest step within 30 s, an authoriser's hold."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from sqlalchemy.orm import Session

from openlfr.api import answers
from openlfr.api.deps import DB, AlertViewerPrincipal, AuthoriserWrite, OperatorWrite, Write, server
from openlfr.api.review_schemas import AlertOut, DecisionIn, NoteIn, OutcomeIn, ReviewOut
from openlfr.api.schemas import Joined, ReasonIn
from openlfr.governance import adjudication
from openlfr.services import alert_source, reviews
from openlfr.services.accounts import Principal
from openlfr.services.console import require_second_verifier
from openlfr.settings import Settings
from openlfr.store.alert_models import Alert
from openlfr.store.governance_models import AlertReview

router = APIRouter(prefix="/api", tags=["alerts"])


def alert_out(
    db: Session, alert: Alert, review: AlertReview, require_second: bool, settings: Settings, viewer: Principal
) -> AlertOut:
    stage = adjudication.stage(review, require_second)
    facts = alert_source.facts(db, alert, review, settings)
    undo_until = reviews.undo_until(review, viewer.username)
    return AlertOut.model_validate(Joined(review, facts, stage=stage, undo_until=undo_until))


def review_out(write: Write, review: AlertReview) -> ReviewOut:
    stage = adjudication.stage(review, require_second_verifier(write.db, write.ctx.settings))
    undo_until = reviews.undo_until(review, write.principal.username)
    return ReviewOut.model_validate(Joined(review, stage=stage, undo_until=undo_until))


@router.get("/alerts")
def list_alerts(
    request: Request,
    viewer: AlertViewerPrincipal,
    db: DB,
    open_only: bool = False,
    deployment: int | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AlertOut]:
    settings = server(request).settings
    second = require_second_verifier(db, settings)
    pairs = reviews.alerts_with_reviews(db, deployment, limit=5000 if open_only else limit)
    if open_only:
        pairs = [(a, r) for a, r in pairs if adjudication.stage(r, second) != "closed"][:limit]
    return [alert_out(db, a, r, second, settings, viewer) for a, r in pairs]


@router.get("/alerts/{alert_id}")
def get_alert(alert_id: int, request: Request, viewer: AlertViewerPrincipal, db: DB) -> AlertOut:
    alert, review = reviews.alert_and_review(db, alert_id)
    settings = server(request).settings
    return alert_out(db, alert, review, require_second_verifier(db, settings), settings, viewer)


@router.get("/alerts/{alert_id}/probe.jpg", response_class=Response, responses=answers.JPEG)
def alert_probe(alert_id: int, _: AlertViewerPrincipal, db: DB) -> Response:
    return answers.jpeg(alert_source.probe_jpeg(db, alert_id), "probe image")


@router.get("/alerts/{alert_id}/reference.jpg", response_class=Response, responses=answers.JPEG)
def alert_reference(alert_id: int, _: AlertViewerPrincipal, db: DB) -> Response:
    return answers.jpeg(alert_source.reference_jpeg(db, alert_id), "reference image")


# The track's best looks and the person's pictures: numbered from 1, as the alert's ``looks`` and ``references`` say.
Position = Annotated[int, Path(ge=1, le=1000)]


@router.get("/alerts/{alert_id}/looks/{position}.jpg", response_class=Response, responses=answers.JPEG)
def alert_look(alert_id: int, position: Position, _: AlertViewerPrincipal, db: DB) -> Response:
    return answers.jpeg(alert_source.look_jpeg(db, alert_id, position), "look of the track")


@router.get("/alerts/{alert_id}/references/{position}.jpg", response_class=Response, responses=answers.JPEG)
def alert_person_reference(alert_id: int, position: Position, _: AlertViewerPrincipal, db: DB) -> Response:
    return answers.jpeg(alert_source.person_reference_jpeg(db, alert_id, position), "reference picture")


@router.post("/alerts/{alert_id}/decision")
def decide(alert_id: int, body: DecisionIn, write: OperatorWrite) -> ReviewOut:
    return review_out(write, reviews.decide(write.db, write.ctx, alert_id, body.decision, body.note))


@router.post("/alerts/{alert_id}/verify")
def verify(alert_id: int, write: OperatorWrite, body: NoteIn | None = None) -> ReviewOut:
    note = None if body is None else body.note
    return review_out(write, reviews.verify(write.db, write.ctx, alert_id, note))


@router.post("/alerts/{alert_id}/outcome")
def outcome(alert_id: int, body: OutcomeIn, write: OperatorWrite) -> ReviewOut:
    return review_out(write, reviews.record_outcome(write.db, write.ctx, alert_id, body.outcome, body.note))


@router.post("/alerts/{alert_id}/undo")
def undo(alert_id: int, write: OperatorWrite) -> ReviewOut:
    """Take back one's own latest step (decision, verification or outcome) within 30 s; refused (409) after
    that, for anyone else's step, or once a later step was taken."""
    return review_out(write, reviews.undo(write.db, write.ctx, alert_id))


@router.post("/alerts/{alert_id}/hold")
def hold(alert_id: int, body: ReasonIn, write: AuthoriserWrite) -> ReviewOut:
    return review_out(write, reviews.hold(write.db, write.ctx, alert_id, body.reason))
