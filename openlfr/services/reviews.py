"""The human side of an alert: decide, verify, record the outcome, hold for an investigation.

The alerts themselves are the live pipeline's rows (``openlfr.store.alert_models.Alert``, committed before they
are announced, carrying their deployment). The human side of each lives in ``AlertReview``, created at the
first human action: an alert without one is simply waiting for its decision, so no alert can miss the queue.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, Session

from openlfr.alerts import outbox
from openlfr.clock import utc_now
from openlfr.errors import InvalidText, NotFound
from openlfr.governance import adjudication
from openlfr.governance.adjudication import Decision, Outcome
from openlfr.governance.deployments import TransitionRefused
from openlfr.governance.roles import Role
from openlfr.services.console import require_second_verifier
from openlfr.services.context import Context
from openlfr.store.alert_models import Alert
from openlfr.store.governance_models import AlertReview
from openlfr.text import visible_text


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
        alert_id=alert.id,
        deployment_id=alert.deployment_id,
        alert_at=alert.seen_at,
        person_ref=alert.person_ref,
        undos=0,
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


def _human(ctx: Context) -> Role:
    role = ctx.as_role
    if role is None:
        raise TransitionRefused("only a person can adjudicate an alert")
    return role


# What the adjudication rules judge: a step is written only where these are still what the rule was shown.
_ADJUDICATION_FACTS = (AlertReview.decision, AlertReview.decided_by, AlertReview.verified_by, AlertReview.outcome)


def _compare_and_set(
    db: Session,
    alert_id: int,
    rule: Callable[[AlertReview], dict[str, Any]],
    facts: tuple[InstrumentedAttribute[Any], ...] = _ADJUDICATION_FACTS,
) -> AlertReview:
    """One step of an alert's review as one atomic compare-and-set: ``rule`` judges the review as read, and its
    changes are written by one ``UPDATE ... WHERE`` the ``facts`` it judged are still as read. Both databases
    make a concurrent writer of the row wait for the first to commit, then judge the WHERE on what it wrote;
    so of two people acting at once one wins, and the other is judged again on the winner's review and refused
    (``TransitionRefused``, 409): never a second write, a second audit entry, or an error of the store."""
    review = review_for(db, alert_id)
    changes = rule(review)
    if review not in db:  # still waiting: its row is made first, once, whoever else makes it at the same moment
        dialect = postgresql if db.get_bind().dialect.name == "postgresql" else sqlite
        db.execute(
            dialect.insert(AlertReview)
            .values(review.column_values())
            .on_conflict_do_nothing(index_elements=["alert_id"])
        )
    as_read = (
        column.is_(None) if getattr(review, column.key) is None else column == getattr(review, column.key)
        for column in facts
    )
    written = db.execute(
        update(AlertReview)
        .where(AlertReview.alert_id == alert_id, *as_read)
        .values(changes)
        .execution_options(synchronize_session=False)
    )
    current = db.get(AlertReview, alert_id, populate_existing=True)
    if current is None:
        raise NotFound(f"no alert {alert_id}")
    if int(getattr(written, "rowcount", 0) or 0) != 1:
        rule(current)  # refused for what the winner did
        raise TransitionRefused("someone else acted on this alert at the same moment; reload it and look again")
    return current


def note_text(note: str | None) -> str | None:
    """A note given with a step, as it is stored: None when blank; refused (``InvalidText``) when it holds a
    character that is not shown as itself, or is longer than ``NOTE_MAX_CHARS``."""
    if note is None or not note.strip():
        return None
    note = visible_text(note.strip(), "the note", lines=True)
    if len(note) > adjudication.NOTE_MAX_CHARS:
        raise InvalidText(f"the note is {len(note)} characters long; keep it within {adjudication.NOTE_MAX_CHARS}")
    return note


def _details(review: AlertReview, note: str | None, **facts: Any) -> dict[str, Any]:
    return {**facts, "deployment": review.deployment_id, **({"note": note} if note else {})}


def decide(db: Session, ctx: Context, alert_id: int, decision: Decision, note: str | None = None) -> AlertReview:
    role, now, note = _human(ctx), utc_now(), note_text(note)
    review = _compare_and_set(
        db,
        alert_id,
        lambda seen: adjudication.decide(seen, ctx.actor, role, decision, now) | {"decision_note": note},
    )
    ctx.audit(db, "alert.decide", f"alert:{alert_id}", _details(review, note, decision=decision.value))
    _announce(db, review, "decision", {"decision": decision.value, "by": ctx.actor, "at": now.isoformat()})
    return review


def verify(db: Session, ctx: Context, alert_id: int, note: str | None = None) -> AlertReview:
    role, now, note = _human(ctx), utc_now(), note_text(note)
    review = _compare_and_set(
        db, alert_id, lambda seen: adjudication.verify(seen, ctx.actor, role, now) | {"verification_note": note}
    )
    ctx.audit(db, "alert.verify", f"alert:{alert_id}", _details(review, note))
    _announce(db, review, "verification", {"decision": review.decision, "by": ctx.actor, "at": now.isoformat()})
    return review


def record_outcome(db: Session, ctx: Context, alert_id: int, outcome: Outcome, note: str | None = None) -> AlertReview:
    role, now, note = _human(ctx), utc_now(), note_text(note)
    second = require_second_verifier(db, ctx.settings)
    review = _compare_and_set(
        db,
        alert_id,
        lambda seen: adjudication.record_outcome(seen, ctx.actor, role, outcome, second, now) | {"outcome_note": note},
    )
    ctx.audit(db, "alert.outcome", f"alert:{alert_id}", _details(review, note, outcome=outcome.value))
    _announce(db, review, "outcome", {"outcome": outcome.value, "by": ctx.actor, "at": now.isoformat()})
    return review


def undo(db: Session, ctx: Context, alert_id: int) -> AlertReview:
    """The person who took an alert's latest step takes it back, within ``adjudication.UNDO_WINDOW``: one atomic
    compare-and-set like the steps themselves (a step taken meanwhile by someone else refuses the undo), audited
    as ``alert.decision_undone`` with the step and what it had said, and announced to the sinks."""
    role, now = _human(ctx), utc_now()
    undone: dict[str, Any] = {}

    def rule(seen: AlertReview) -> dict[str, Any]:
        kind, changes = adjudication.undo(seen, ctx.actor, role, now)
        said = {"decision": seen.decision, "verification": seen.decision, "outcome": seen.outcome}[kind]
        undone.update(step=kind, was=said)
        return changes

    review = _compare_and_set(db, alert_id, rule, facts=(*_ADJUDICATION_FACTS, AlertReview.undos))
    ctx.audit(db, "alert.decision_undone", f"alert:{alert_id}", {**undone, "deployment": review.deployment_id})
    _announce(db, review, "undo", {**undone, "by": ctx.actor, "at": now.isoformat()})
    return review


def undo_until(review: AlertReview, by_user: str) -> datetime | None:
    """Until when ``by_user`` may still undo the alert's latest step (None: they may not), on the one clock."""
    until = adjudication.undo_until(review, by_user)
    return None if until is None or until < utc_now() else until


def _announce(db: Session, review: AlertReview, step: str, facts: dict[str, Any]) -> None:
    """The step as an event for the deployment's sinks, in the step's own transaction (the outbox): a force's
    systems learn that a match was confirmed, and verified by a second person, before anyone acts on it; and that
    a step was undone. A step taken again after an undo is a new event (its key counts the undos)."""
    outbox.enqueue_review(db, review.alert_id, step, facts, round_=review.undos)


def hold(db: Session, ctx: Context, alert_id: int, reason: str) -> AlertReview:
    """An authoriser keeps an alert's probe image past the retention period, for an investigation."""
    held_at = utc_now()

    def rule(seen: AlertReview) -> dict[str, Any]:
        if ctx.as_role is not Role.AUTHORISER:
            raise TransitionRefused("only an authoriser can hold an alert for an investigation")
        if seen.probe_purged_at is not None:
            raise TransitionRefused("the probe image was already purged")
        if len(reason.strip()) < 10:
            raise TransitionRefused("name the investigation (at least 10 characters)")
        return {"held_by": ctx.actor, "held_at": held_at, "hold_reason": reason.strip()}

    # Written only while the probe is still there: a purge committed meanwhile refuses the hold.
    review = _compare_and_set(db, alert_id, rule, facts=(AlertReview.probe_purged_at,))
    ctx.audit(db, "alert.hold", f"alert:{alert_id}", {"reason": review.hold_reason})
    return review


def claim_probe_purge(db: Session, alert_id: int, moment: datetime) -> bool:
    """Whether retention may purge the alert's probe image now, its review marked purged in the same step; False
    when the alert is held for an investigation, however recently. This and ``hold`` are compare-and-sets on the
    same review row, so of a hold and a purge at once one wins: never an alert held with its probe gone."""

    def rule(seen: AlertReview) -> dict[str, Any]:
        if seen.held_by is not None:
            raise TransitionRefused(f"held for an investigation by {seen.held_by}")
        return {"probe_purged_at": moment}

    try:
        _compare_and_set(db, alert_id, rule, facts=(AlertReview.held_by,))
    except NotFound:
        return True  # an alert outside any deployment (a bare `openlfr scan`): nobody can hold it
    except TransitionRefused:
        return False
    return True
