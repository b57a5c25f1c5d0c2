"""Human adjudication of an alert: a decision, a second person's verification, then an outcome.

Every alert waits for an operator's decision. Only a *confirmed match* can lead to anyone being approached,
so only a confirmed match can be verified and get an outcome. With ``require_second`` on (the default, after
the EU AI Act, Art. 14(5)), a second operator — not the one who decided — must verify the match before an
outcome can be recorded. A step can be undone by the person who took it, within ``UNDO_WINDOW`` and while it is
still the last step (a slip of the hand, caught at once); after that it is final: a correction is a new audit
entry, not an overwrite. Either way the audit log keeps the step and its undoing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from openlfr.clock import utc
from openlfr.governance.deployments import TransitionRefused
from openlfr.governance.roles import Role


class Decision(StrEnum):
    CONFIRMED = "confirmed"
    NOT_A_MATCH = "not_a_match"
    CANNOT_TELL = "cannot_tell"


class Outcome(StrEnum):
    ARRESTED = "arrested"
    ENGAGED_NO_FURTHER_ACTION = "engaged_nfa"
    NOT_LOCATED = "not_located"


DECISION_LABELS = {
    Decision.CONFIRMED: "Confirmed match",
    Decision.NOT_A_MATCH: "Not a match",
    Decision.CANNOT_TELL: "Cannot tell",
}
OUTCOME_LABELS = {
    Outcome.ARRESTED: "Engaged and arrested",
    Outcome.ENGAGED_NO_FURTHER_ACTION: "Engaged, no further action",
    Outcome.NOT_LOCATED: "Not located",
}


UNDO_WINDOW = timedelta(seconds=30)
NOTE_MAX_CHARS = 1000  # a note with a step: a sentence or two, not a report

# What undoing each step clears: the step as if it had never been taken (its audit entries stay).
_UNDONE: dict[str, dict[str, Any]] = {
    "decision": {"decision": None, "decided_by": None, "decided_at": None, "decision_note": None},
    "verification": {"verified_by": None, "verified_at": None, "verification_note": None},
    "outcome": {"outcome": None, "outcome_by": None, "outcome_at": None, "outcome_note": None},
}


class ReviewFacts(Protocol):
    decision: str | None
    decided_by: str | None
    verified_by: str | None
    outcome: str | None


class StepFacts(ReviewFacts, Protocol):
    decided_at: datetime | None
    verified_at: datetime | None
    outcome_by: str | None
    outcome_at: datetime | None
    undos: int


def _operator(role: Role) -> None:
    if role is not Role.OPERATOR:
        raise TransitionRefused("only an operator can adjudicate alerts")


def decide(review: ReviewFacts, by_user: str, role: Role, decision: Decision, now: datetime) -> dict[str, Any]:
    _operator(role)
    if review.decision is not None:
        raise TransitionRefused(f"this alert was already decided ({review.decision}) by {review.decided_by}")
    return {"decision": decision.value, "decided_by": by_user, "decided_at": utc(now)}


def verify(review: ReviewFacts, by_user: str, role: Role, now: datetime) -> dict[str, Any]:
    _operator(role)
    if review.decision != Decision.CONFIRMED.value:
        raise TransitionRefused("only a confirmed match can be verified")
    if review.verified_by is not None:
        raise TransitionRefused(f"already verified by {review.verified_by}")
    if by_user == review.decided_by:
        raise TransitionRefused("the second check must be made by a different operator")
    return {"verified_by": by_user, "verified_at": utc(now)}


def record_outcome(
    review: ReviewFacts, by_user: str, role: Role, outcome: Outcome, require_second: bool, now: datetime
) -> dict[str, Any]:
    _operator(role)
    if review.decision != Decision.CONFIRMED.value:
        raise TransitionRefused("an outcome can only follow a confirmed match")
    if require_second and review.verified_by is None:
        raise TransitionRefused("a second operator must verify this match before an outcome is recorded")
    if review.outcome is not None:
        raise TransitionRefused(f"the outcome was already recorded ({review.outcome})")
    return {"outcome": outcome.value, "outcome_by": by_user, "outcome_at": utc(now)}


def last_step(review: StepFacts) -> tuple[str, str | None, datetime | None] | None:
    """The review's latest step: (decision, verification or outcome; who took it; when), or None before any."""
    if review.outcome is not None:
        return "outcome", review.outcome_by, review.outcome_at
    if review.verified_by is not None:
        return "verification", review.verified_by, review.verified_at
    if review.decision is not None:
        return "decision", review.decided_by, review.decided_at
    return None


def undo_until(review: StepFacts, by_user: str) -> datetime | None:
    """Until when ``by_user`` may undo the review's latest step: None unless that step is theirs."""
    step = last_step(review)
    if step is None or step[1] != by_user or step[2] is None:
        return None
    return utc(step[2]) + UNDO_WINDOW


def undo(review: StepFacts, by_user: str, role: Role, now: datetime) -> tuple[str, dict[str, Any]]:
    """Undoing the latest step: which step, and the changes that clear it. Only by the person who took it, within
    ``UNDO_WINDOW``, and only while nothing has happened since (a later step is the latest one)."""
    _operator(role)
    step = last_step(review)
    if step is None:
        raise TransitionRefused("nothing was decided on this alert: there is nothing to undo")
    kind, by, _ = step
    until = undo_until(review, by_user)
    if until is None:
        raise TransitionRefused(f"only {by}, who recorded the {kind}, can undo it, and only while it is the last step")
    if utc(now) > until:
        raise TransitionRefused(
            f"the {kind} can only be undone within {int(UNDO_WINDOW.total_seconds())} s; it is final now"
        )
    return kind, _UNDONE[kind] | {"undos": review.undos + 1}


def stage(review: ReviewFacts | None, require_second: bool) -> str:
    """Where an alert is in its review, for the queue: what it waits for next."""
    if review is None or review.decision is None:
        return "awaiting decision"
    if review.decision != Decision.CONFIRMED.value:
        return "closed"
    if require_second and review.verified_by is None:
        return "awaiting verification"
    if review.outcome is None:
        return "awaiting outcome"
    return "closed"
