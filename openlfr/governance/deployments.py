"""The deployment state machine and ``may_match``, the check every matcher must pass.

A deployment is drafted (place, purpose, window, cameras, watchlist, threshold), authorised by an
``authoriser`` who did not draft it and who writes why, and is *live* only while ``starts_at <= now <
ends_at``. It can be cancelled before it ends, or ended early.

A deployment's ``kind`` is ``live`` (cameras, in real time) or ``retrospective`` (recorded video files, analysed as
fast as the machine allows). A retrospective search may be *urgent*: it then runs before it is authorised, from
its draft, and must be authorised by ``urgent_until`` (drafted + ``rfr_authorise_within_hours``, 48 by default,
EU AI Act Art. 26(10)); past that moment it may not match and its alerts are destroyed (``lapse``).

Nothing here touches a database: the
functions take anything shaped like ``DeploymentFacts`` (the ORM row is) and either return the fields to
change or raise ``TransitionRefused`` with a sentence a person can act on.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from openlfr.clock import utc
from openlfr.errors import OpenLFRError
from openlfr.governance.roles import Role

# A justification is a written reason, not a tick box: demand a sentence, not a word.
MIN_JUSTIFICATION_CHARS = 20
# A deployment is an operation, not a standing surveillance capability: its window is bounded
# (``deployment_max_window_hours``); a longer operation is authorised again, with its own justification.
DEFAULT_MAX_WINDOW_HOURS = 24.0


class Status(StrEnum):
    """What is stored. ``live`` and ``scheduled`` are not stored: they follow from the clock (see ``phase``)."""

    DRAFT = "draft"
    AUTHORISED = "authorised"
    CANCELLED = "cancelled"
    ENDED = "ended"


class Kind(StrEnum):
    LIVE = "live"
    RETROSPECTIVE = "retrospective"


class Phase(StrEnum):
    """What a deployment is at a given moment."""

    DRAFT = "draft"
    URGENT = "urgent"  # an urgent retrospective draft, running before its authorisation (due by urgent_until)
    SCHEDULED = "scheduled"  # authorised, window not yet open
    LIVE = "live"
    ENDED = "ended"
    CANCELLED = "cancelled"


class GovernanceError(OpenLFRError):
    """A rule of deployment governance refused an action."""


class TransitionRefused(GovernanceError):
    """The deployment is not in a state that allows this, or this person may not do it."""


class DeploymentFacts(Protocol):
    status: str
    created_by: str
    authorised_by: str | None
    starts_at: datetime
    ends_at: datetime
    ended_at: datetime | None
    cancelled_at: datetime | None
    snapshot_destroyed_at: datetime | None
    kind: str
    urgent_until: datetime | None


def phase(deployment: DeploymentFacts, now: datetime) -> Phase:
    now = utc(now)
    status = Status(deployment.status)
    if status is Status.DRAFT:
        urgent = deployment.urgent_until is not None and now < utc(deployment.urgent_until)
        return Phase.URGENT if urgent else Phase.DRAFT
    if status is Status.CANCELLED:
        return Phase.CANCELLED
    if status is Status.ENDED or now >= utc(deployment.ends_at):
        return Phase.ENDED
    if now < utc(deployment.starts_at):
        return Phase.SCHEDULED
    return Phase.LIVE


def effective_end(deployment: DeploymentFacts) -> datetime | None:
    """When the deployment stopped (or will stop) being able to match; None for a draft, which never could."""
    stops = [utc(deployment.ends_at)]
    if deployment.ended_at is not None:
        stops.append(utc(deployment.ended_at))
    if deployment.cancelled_at is not None:
        stops.append(utc(deployment.cancelled_at))
    if Status(deployment.status) is Status.DRAFT:
        return None
    return min(stops)


@dataclass(frozen=True)
class MatchPermission:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def may_match(deployment: DeploymentFacts | None, now: datetime) -> MatchPermission:
    """Whether a face may be compared with this deployment's watchlist at ``now``. Refuse unless all rules hold."""
    if deployment is None:
        return MatchPermission(False, "no deployment: matching happens only inside an authorised deployment")
    current = phase(deployment, now)
    if current is Phase.DRAFT:
        return MatchPermission(False, "the deployment is a draft and has not been authorised")
    if current is Phase.URGENT:
        return _urgent_may_match(deployment, now)
    if current is Phase.CANCELLED:
        return MatchPermission(False, "the deployment was cancelled")
    if current is Phase.ENDED:
        return MatchPermission(False, "the deployment has ended")
    if current is Phase.SCHEDULED:
        return MatchPermission(False, f"the deployment window opens at {utc(deployment.starts_at):%Y-%m-%d %H:%M} UTC")
    # Belt and braces: a row edited behind the application's back must not become matchable.
    if not deployment.authorised_by:
        return MatchPermission(False, "the deployment has no authoriser on record")
    if deployment.authorised_by == deployment.created_by:
        return MatchPermission(False, "the deployment was authorised by its own author")
    if deployment.snapshot_destroyed_at is not None:
        return MatchPermission(False, "the deployment's watchlist snapshot has been destroyed")
    return MatchPermission(True, "live and authorised")


def _urgent_may_match(deployment: DeploymentFacts, now: datetime) -> MatchPermission:
    """An urgent retrospective search before its authorisation: inside its window, with its snapshot, by its
    deadline (``phase`` says URGENT only before ``urgent_until``)."""
    if Kind(deployment.kind) is not Kind.RETROSPECTIVE or deployment.urgent_until is None:
        return MatchPermission(False, "only a retrospective search can run before its authorisation")
    if deployment.snapshot_destroyed_at is not None:
        return MatchPermission(False, "the deployment's watchlist snapshot has been destroyed")
    if not utc(deployment.starts_at) <= utc(now) < utc(deployment.ends_at):
        return MatchPermission(False, "outside the deployment window")
    return MatchPermission(
        True,
        "urgent retrospective search running BEFORE authorisation: unless an authoriser approves it by "
        f"{utc(deployment.urgent_until):%Y-%m-%d %H:%M} UTC its alerts are destroyed",
    )


def validate_draft(starts_at: datetime, ends_at: datetime, cameras: list[str], place: str, purpose: str) -> None:
    """The fields a draft needs before anyone can be asked to authorise it."""
    if utc(ends_at) <= utc(starts_at):
        raise GovernanceError("the deployment must end after it starts")
    if not place.strip():
        raise GovernanceError("a deployment needs a place")
    if not purpose.strip():
        raise GovernanceError("a deployment needs a purpose")
    if not cameras:
        raise GovernanceError("a deployment needs at least one camera")


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:,.2f}".rstrip("0").rstrip(".") + " h"


def check_window(starts_at: datetime, ends_at: datetime, max_window: timedelta) -> None:
    """Refuse a window longer than ``max_window`` (the whole window as drafted, not what is left of it)."""
    length = utc(ends_at) - utc(starts_at)
    if length > max_window:
        raise TransitionRefused(
            f"the deployment window is {_hours(length)} long; at most {_hours(max_window)} may be authorised "
            "(setting deployment_max_window_hours): draft a shorter window"
        )


# How many of the people a snapshot would miss a refusal names before it says "and N more".
MISSING_NAMED = 5


def check_snapshot_complete(watchlist: str, model_id: str, missing: list[str]) -> None:
    """Refuse a snapshot that would leave out listed people: those with no embedding of the model the
    deployment matches with (enrolled under another model and not re-embedded)."""
    if not missing:
        return
    named = ", ".join(missing[:MISSING_NAMED])
    more = f" and {len(missing) - MISSING_NAMED} more" if len(missing) > MISSING_NAMED else ""
    who = "person" if len(missing) == 1 else "people"
    raise TransitionRefused(
        f"watchlist {watchlist!r} has {len(missing)} listed {who} with no {model_id} embedding, who would not be "
        f"searched: {named}{more}; run `openlfr watchlist reembed {shlex.quote(watchlist)}` first"
    )


def authorise(
    deployment: DeploymentFacts,
    by_user: str,
    by_role: Role,
    justification: str,
    now: datetime,
    max_window_hours: float = DEFAULT_MAX_WINDOW_HOURS,
) -> dict[str, Any]:
    """Fields to set when ``by_user`` authorises the deployment; refuses when a rule does not hold."""
    if by_role is not Role.AUTHORISER:
        raise TransitionRefused("only an authoriser can authorise a deployment")
    if Status(deployment.status) is not Status.DRAFT:
        raise TransitionRefused(f"only a draft can be authorised; this deployment is {deployment.status}")
    if by_user == deployment.created_by:
        raise TransitionRefused("the author of a deployment cannot authorise it; another authoriser must")
    deadline = deployment.urgent_until
    urgent = deadline is not None
    if deadline is not None and utc(now) >= utc(deadline):
        raise TransitionRefused(
            "this urgent search was not authorised within the time allowed (setting rfr_authorise_within_hours); "
            "its alerts are destroyed: draft a new one"
        )
    reason = justification.strip()
    if len(reason) < MIN_JUSTIFICATION_CHARS:
        raise TransitionRefused(
            f"write a justification of at least {MIN_JUSTIFICATION_CHARS} characters (necessity and proportionality)"
        )
    # An urgent search ran in its window before this authorisation: what is authorised is what ran.
    if not urgent and utc(now) >= utc(deployment.ends_at):
        raise TransitionRefused("the deployment window has already closed; draft a new one")
    check_window(deployment.starts_at, deployment.ends_at, timedelta(hours=max_window_hours))
    return {
        "status": Status.AUTHORISED.value,
        "authorised_by": by_user,
        "authorised_at": utc(now),
        "justification": reason,
    }


def cancel(deployment: DeploymentFacts, by_user: str, reason: str, now: datetime) -> dict[str, Any]:
    current = phase(deployment, now)
    if current in (Phase.ENDED, Phase.CANCELLED):
        raise TransitionRefused(f"the deployment is already {current.value}")
    if not reason.strip():
        raise TransitionRefused("say why the deployment is cancelled")
    return {
        "status": Status.CANCELLED.value,
        "cancelled_by": by_user,
        "cancelled_at": utc(now),
        "cancel_reason": reason.strip(),
    }


def end(deployment: DeploymentFacts, by_user: str, now: datetime) -> dict[str, Any]:
    """End a live deployment now (or record that a past window closed)."""
    current = phase(deployment, now)
    if current in (Phase.DRAFT, Phase.URGENT, Phase.SCHEDULED):
        raise TransitionRefused("only an authorised deployment that has started can be ended; cancel it instead")
    if current is Phase.CANCELLED or Status(deployment.status) is Status.ENDED:
        raise TransitionRefused(f"the deployment is already {deployment.status}")
    return {"status": Status.ENDED.value, "ended_by": by_user, "ended_at": min(utc(now), utc(deployment.ends_at))}


def close_if_over(deployment: DeploymentFacts, now: datetime) -> dict[str, Any]:
    """The fields that record a window that closed by itself (empty if nothing to do)."""
    if Status(deployment.status) is Status.AUTHORISED and utc(now) >= utc(deployment.ends_at):
        return {"status": Status.ENDED.value, "ended_by": "system", "ended_at": utc(deployment.ends_at)}
    return {}


def urgent_deadline(drafted_at: datetime, within_hours: float) -> datetime:
    """When an urgent retrospective search drafted at ``drafted_at`` must be authorised by."""
    return utc(drafted_at) + timedelta(hours=within_hours)


def lapse(deployment: DeploymentFacts, now: datetime, within_hours: float) -> dict[str, Any]:
    """The fields that record an urgent search nobody authorised in time (empty if it is not due): it is
    cancelled by the system (unless its author cancelled it already) and its alerts are to be destroyed."""
    if deployment.urgent_until is None or deployment.authorised_by is not None:
        return {}
    if utc(now) < utc(deployment.urgent_until):
        return {}
    changes: dict[str, Any] = {"authorisation_lapsed_at": utc(now)}
    if Status(deployment.status) is not Status.CANCELLED:
        changes |= {
            "status": Status.CANCELLED.value,
            "cancelled_by": "system",
            "cancelled_at": utc(now),
            "cancel_reason": f"not authorised within {_hours(timedelta(hours=within_hours))} of its urgent start: "
            "its alerts were destroyed",
        }
    return changes


def editable(deployment: DeploymentFacts) -> bool:
    """Only a draft can change: anything authorised is what the authoriser saw."""
    return Status(deployment.status) is Status.DRAFT
