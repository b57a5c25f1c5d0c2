"""The human side of an alert: decide, verify, record the outcome, hold for an investigation.

The alerts themselves are the live pipeline's rows (``openlfr.store.alert_models.Alert``, committed before they
are announced, carrying their deployment). The human side of each lives in ``AlertReview``, created at the
first human action: an alert without one is simply waiting for its decision, so no alert can miss the queue.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from openlfr.clock import utc_now
from openlfr.errors import NotFound
from openlfr.governance import adjudication
from openlfr.governance.adjudication import Decision, Outcome
from openlfr.governance.deployments import TransitionRefused
from openlfr.governance.roles import Role
from openlfr.services.console import require_second_verifier
from openlfr.services.context import Context
from openlfr.services.deployments import apply
from openlfr.store.alert_models import Alert
from openlfr.store.governance_models import AlertReview


def review_for(db: Session, alert_id: int) -> AlertReview:
    """The review of a deployment's alert: the stored one, or a new (unsaved) one for an alert still waiting."""
    review = db.get(AlertReview, alert_id)
    if review is not None:
        return review
    alert = db.get(Alert, alert_id)
    if alert is None or alert.deployment_id is None:
        raise NotFound(f"no alert {alert_id}")
    return waiting_review(alert)


def alert_and_review(db: Session, alert_id: int) -> tuple[Alert, AlertReview]:
    """A deployment's alert with its review (see ``review_for``), or NotFound."""
    review = review_for(db, alert_id)
    alert = db.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"no alert {alert_id}")
    return alert, review


def waiting_review(alert: Alert) -> AlertReview:
    """The (unsaved) review of an alert nobody has acted on yet."""
    return AlertReview(
        alert_id=alert.id, deployment_id=alert.deployment_id, alert_at=alert.seen_at, person_ref=alert.person_ref
    )


def alerts_with_reviews(
    db: Session, deployment_id: int | None = None, limit: int = 300, newest_first: bool = True
) -> list[tuple[Alert, AlertReview]]:
    """A deployment's (or every deployment's) alerts with their reviews; waiting ones get an unsaved review."""
    query = (
        select(Alert, AlertReview)
        .outerjoin(AlertReview, AlertReview.alert_id == Alert.id)
        .where(Alert.deployment_id.is_not(None))
        .order_by(Alert.seen_at.desc() if newest_first else Alert.seen_at, Alert.id.desc())
        .limit(limit)
    )
    if deployment_id is not None:
        query = query.where(Alert.deployment_id == deployment_id)
    return [(alert, review or waiting_review(alert)) for alert, review in db.execute(query).all()]


def saved(db: Session, review: AlertReview) -> AlertReview:
    """The review, added to the session if it was still a waiting (unsaved) one."""
    if review not in db:
        db.add(review)
    return review


def _human(ctx: Context) -> Role:
    role = ctx.as_role
    if role is None:
        raise TransitionRefused("only a person can adjudicate an alert")
    return role


def decide(db: Session, ctx: Context, alert_id: int, decision: Decision) -> AlertReview:
    review = review_for(db, alert_id)
    apply(saved(db, review), adjudication.decide(review, ctx.actor, _human(ctx), decision, utc_now()))
    ctx.audit(db, "alert.decide", f"alert:{alert_id}", {"decision": decision.value, "deployment": review.deployment_id})
    return review


def verify(db: Session, ctx: Context, alert_id: int) -> AlertReview:
    review = review_for(db, alert_id)
    apply(saved(db, review), adjudication.verify(review, ctx.actor, _human(ctx), utc_now()))
    ctx.audit(db, "alert.verify", f"alert:{alert_id}", {"deployment": review.deployment_id})
    return review


def record_outcome(db: Session, ctx: Context, alert_id: int, outcome: Outcome) -> AlertReview:
    review = review_for(db, alert_id)
    second = require_second_verifier(db, ctx.settings)
    apply(saved(db, review), adjudication.record_outcome(review, ctx.actor, _human(ctx), outcome, second, utc_now()))
    ctx.audit(db, "alert.outcome", f"alert:{alert_id}", {"outcome": outcome.value, "deployment": review.deployment_id})
    return review


def hold(db: Session, ctx: Context, alert_id: int, reason: str) -> AlertReview:
    """An authoriser keeps an alert's probe image past the retention period, for an investigation."""
    review = review_for(db, alert_id)
    if ctx.as_role is not Role.AUTHORISER:
        raise TransitionRefused("only an authoriser can hold an alert for an investigation")
    if review.probe_purged_at is not None:
        raise TransitionRefused("the probe image was already purged")
    if len(reason.strip()) < 10:
        raise TransitionRefused("name the investigation (at least 10 characters)")
    saved(db, review)
    review.held_by, review.held_at, review.hold_reason = ctx.actor, utc_now(), reason.strip()
    ctx.audit(db, "alert.hold", f"alert:{alert_id}", {"reason": review.hold_reason})
    return review
