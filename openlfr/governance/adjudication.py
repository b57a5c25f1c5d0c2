"""Human adjudication of an alert: a decision, a second person's verification, then an outcome.

Every alert waits for an operator's decision. Only a *confirmed match* can lead to anyone being approached,
so only a confirmed match can be verified and get an outcome. With ``require_second`` on (the default, after
the EU AI Act, Art. 14(5)), a second operator — not the one who decided — must verify the match before an
outcome can be recorded. Decisions, verifications and outcomes are final: a correction is a new audit entry,
not an overwrite.
"""

from __future__ import annotations

from datetime import datetime
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


class ReviewFacts(Protocol):
    decision: str | None
    decided_by: str | None
    verified_by: str | None
    outcome: str | None


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
