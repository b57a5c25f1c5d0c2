"""What the server does, as functions over a database session: each checks the governance rules, changes the
rows and writes the audit entry in the same transaction. The routes (and the CLI) call these and commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, not_, select, update
from sqlalchemy.orm import Session

from openlfr.api import audit_log, sources
from openlfr.api.auth import Principal
from openlfr.errors import OpenLFRError
from openlfr.governance import adjudication, deployments, records, retention
from openlfr.governance.adjudication import Decision, Outcome
from openlfr.governance.deployments import GovernanceError, TransitionRefused, now_utc, utc
from openlfr.governance.roles import Role
from openlfr.settings import Settings
from openlfr.store.alert_models import Alert
from openlfr.store.governance_models import (
    AlertReview,
    ConsoleSetting,
    Deployment,
    SnapshotImage,
    SnapshotPerson,
)
from openlfr.store.models import Person


class NotFound(OpenLFRError):
    pass


@dataclass(frozen=True)
class Context:
    """Who acts, with which settings and audit key."""

    settings: Settings
    key: bytes
    actor: str
    role: str  # a Role value, or "system" for the server's own actions (retention, window closing)

    @classmethod
    def of(cls, settings: Settings, key: bytes, principal: Principal) -> Context:
        return cls(settings, key, principal.username, principal.role.value)

    @classmethod
    def system(cls, settings: Settings, key: bytes) -> Context:
        return cls(settings, key, "system", "system")

    @property
    def as_role(self) -> Role | None:
        try:
            return Role(self.role)
        except ValueError:
            return None

    def audit(self, db: Session, action: str, target: str, details: dict[str, Any] | None = None) -> None:
        audit_log.record(db, self.key, self.actor, self.role, action, target, details)


def _apply(row: object, changes: dict[str, Any]) -> None:
    for name, value in changes.items():
        setattr(row, name, value)


# ----- console settings -----

CONSOLE_SETTINGS: dict[str, type] = {"require_second_verifier": bool}


def console_settings(db: Session, settings: Settings) -> dict[str, Any]:
    values: dict[str, Any] = {"require_second_verifier": settings.require_second_verifier}
    for row in db.scalars(select(ConsoleSetting)):
        if row.key in CONSOLE_SETTINGS:
            values[row.key] = row.value
    return values


def change_setting(db: Session, ctx: Context, key: str, value: Any) -> None:
    expected = CONSOLE_SETTINGS.get(key)
    if expected is None:
        raise GovernanceError(f"unknown setting {key!r}")
    if not isinstance(value, expected):
        raise GovernanceError(f"setting {key!r} takes a {expected.__name__}")
    before = console_settings(db, ctx.settings)[key]
    row = db.get(ConsoleSetting, key)
    if row is None:
        db.add(ConsoleSetting(key=key, value=value, changed_by=ctx.actor, changed_at=now_utc()))
    else:
        row.value, row.changed_by, row.changed_at = value, ctx.actor, now_utc()
    ctx.audit(db, "settings.change", f"setting:{key}", {"from": before, "to": value})


# ----- deployments -----


def get_deployment(db: Session, deployment_id: int) -> Deployment:
    row = db.get(Deployment, deployment_id)
    if row is None:
        raise NotFound(f"no deployment {deployment_id}")
    return row


def create_draft(
    db: Session,
    ctx: Context,
    *,
    name: str,
    place: str,
    purpose: str,
    starts_at: datetime,
    ends_at: datetime,
    cameras: list[dict[str, Any]],
    watchlist: str,
    threshold: float | None,
    target_fpir: float | None,
) -> Deployment:
    deployments.validate_draft(starts_at, ends_at, [c.get("name", "") for c in cameras], place, purpose)
    if (threshold is None) == (target_fpir is None):
        raise GovernanceError("give either a threshold or a target false-alert rate")
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise GovernanceError("a threshold is a match score between 0 and 1")
    if target_fpir is not None and not 0.0 < target_fpir < 1.0:
        raise GovernanceError("a target false-alert rate lies between 0 and 1")
    names = [c["name"] for c in cameras]
    if len(set(names)) != len(names):
        raise GovernanceError("camera names must differ")
    if not sources.watchlist_exists(db, watchlist):
        raise GovernanceError(f"no watchlist named {watchlist!r}")
    row = Deployment(
        name=name.strip(),
        place=place.strip(),
        purpose=purpose.strip(),
        starts_at=utc(starts_at),
        ends_at=utc(ends_at),
        cameras=cameras,
        watchlist_name=watchlist,
        threshold=threshold,
        target_fpir=target_fpir,
        status=deployments.Status.DRAFT.value,
        created_by=ctx.actor,
        created_at=now_utc(),
    )
    db.add(row)
    db.flush()
    ctx.audit(
        db,
        "deployment.draft",
        f"deployment:{row.id}",
        {"name": row.name, "place": row.place, "watchlist": watchlist, "starts_at": row.starts_at.isoformat()},
    )
    return row


def authorise(
    db: Session, ctx: Context, deployment_id: int, justification: str, now: datetime | None = None
) -> Deployment:
    """Authorise a draft and freeze the watchlist it will run with (the snapshot the authoriser approved)."""
    moment = now or now_utc()
    row = get_deployment(db, deployment_id)
    role = ctx.as_role
    if role is None:
        raise TransitionRefused("only a person can authorise a deployment")
    _apply(row, deployments.authorise(row, ctx.actor, role, justification, moment))
    people = sources.active_people(db, row.watchlist_name, moment)
    if not people:
        raise TransitionRefused(f"watchlist {row.watchlist_name!r} has nobody on it who has not expired")
    size = 0
    model_ids: set[str] = set()
    for person in people:
        snap = SnapshotPerson(
            deployment_id=row.id,
            person_ref=person.ref,
            display_name=person.display_name,
            category=person.category,
            reason=person.reason,
        )
        db.add(snap)
        db.flush()
        for image in person.images:
            db.add(
                SnapshotImage(
                    person_id=snap.id,
                    deployment_id=row.id,
                    image_jpeg=image.jpeg,
                    embedding=image.embedding,
                    model_id=image.model_id,
                    source_image_id=image.image_id,
                )
            )
            model_ids.add(image.model_id)
            size += 1
    if size == 0:
        raise TransitionRefused(f"watchlist {row.watchlist_name!r} has no reference images")
    if len(model_ids) != 1:
        raise TransitionRefused(f"watchlist {row.watchlist_name!r} mixes embedding models: {sorted(model_ids)}")
    chosen, note = sources.resolve_threshold(ctx.settings, model_ids.pop(), size, row.threshold, row.target_fpir)
    row.snapshot_taken_at = moment
    row.watchlist_size = size
    row.effective_threshold = chosen
    row.threshold_note = note
    ctx.audit(
        db,
        "deployment.authorise",
        f"deployment:{row.id}",
        {"justification": row.justification, "watchlist_size": size, "people": len(people), "threshold": chosen},
    )
    return row


def cancel(db: Session, ctx: Context, deployment_id: int, reason: str) -> Deployment:
    row = get_deployment(db, deployment_id)
    _apply(row, deployments.cancel(row, ctx.actor, reason, now_utc()))
    ctx.audit(db, "deployment.cancel", f"deployment:{row.id}", {"reason": row.cancel_reason})
    return row


def end(db: Session, ctx: Context, deployment_id: int) -> Deployment:
    row = get_deployment(db, deployment_id)
    _apply(row, deployments.end(row, ctx.actor, now_utc()))
    ctx.audit(db, "deployment.end", f"deployment:{row.id}", {})
    return row


def close_finished(db: Session, ctx: Context, now: datetime | None = None) -> list[int]:
    """Record the end of every authorised deployment whose window has closed."""
    moment = now or now_utc()
    closed = []
    for row in db.scalars(select(Deployment).where(Deployment.status == deployments.Status.AUTHORISED.value)):
        changes = deployments.close_if_over(row, moment)
        if changes:
            _apply(row, changes)
            ctx.audit(db, "deployment.window_closed", f"deployment:{row.id}", {})
            closed.append(row.id)
    return closed


def add_counts(db: Session, deployment_id: int, frames: int, faces: int, tracks: int, alerts: int) -> None:
    """The pipeline's counters (increments); the only thing kept about the faces that raised no alert."""
    db.execute(
        update(Deployment)
        .where(Deployment.id == deployment_id)
        .values(
            frames=Deployment.frames + frames,
            faces_seen=Deployment.faces_seen + faces,
            tracks=Deployment.tracks + tracks,
            alerts_raised=Deployment.alerts_raised + alerts,
        )
    )


def record_of(db: Session, row: Deployment) -> records.DeploymentRecord:
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
        deployments.phase(row, now_utc()).value,
        row.starts_at,
        row.ends_at,
        deployments.effective_end(row),
        row.watchlist_size,
        row.faces_seen,
        [(r[0], r[1], r[2]) for r in reviews],
    )


def records_between(db: Session, start: datetime, stop: datetime) -> list[records.DeploymentRecord]:
    """Records of deployments that started in [start, stop), authorised ones only (drafts never ran)."""
    rows = db.scalars(
        select(Deployment)
        .where(
            Deployment.starts_at >= utc(start), Deployment.starts_at < utc(stop), Deployment.authorised_by.is_not(None)
        )
        .order_by(Deployment.starts_at)
    ).all()
    return [record_of(db, row) for row in rows]


# ----- alerts -----
#
# The alerts themselves are the live pipeline's rows (``openlfr.store.alert_models.Alert``, committed before they
# are announced, carrying their deployment). The human side of each lives in ``AlertReview``, created at the
# first human action: an alert without one is simply waiting for its decision, so no alert can miss the queue.


def review_for(db: Session, alert_id: int) -> AlertReview:
    """The review of a deployment's alert: the stored one, or a new (unsaved) one for an alert still waiting."""
    review = db.get(AlertReview, alert_id)
    if review is not None:
        return review
    alert = db.get(Alert, alert_id)
    if alert is None or alert.deployment_id is None:
        raise NotFound(f"no alert {alert_id}")
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
    out = []
    for alert, review in db.execute(query).all():
        if review is None:
            review = AlertReview(
                alert_id=alert.id,
                deployment_id=alert.deployment_id,
                alert_at=alert.seen_at,
                person_ref=alert.person_ref,
            )
        out.append((alert, review))
    return out


def _saved(db: Session, review: AlertReview) -> AlertReview:
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
    _apply(_saved(db, review), adjudication.decide(review, ctx.actor, _human(ctx), decision, now_utc()))
    ctx.audit(db, "alert.decide", f"alert:{alert_id}", {"decision": decision.value, "deployment": review.deployment_id})
    return review


def verify(db: Session, ctx: Context, alert_id: int) -> AlertReview:
    review = review_for(db, alert_id)
    _apply(_saved(db, review), adjudication.verify(review, ctx.actor, _human(ctx), now_utc()))
    ctx.audit(db, "alert.verify", f"alert:{alert_id}", {"deployment": review.deployment_id})
    return review


def record_outcome(db: Session, ctx: Context, alert_id: int, outcome: Outcome) -> AlertReview:
    review = review_for(db, alert_id)
    second = bool(console_settings(db, ctx.settings)["require_second_verifier"])
    _apply(_saved(db, review), adjudication.record_outcome(review, ctx.actor, _human(ctx), outcome, second, now_utc()))
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
    _saved(db, review)
    review.held_by, review.held_at, review.hold_reason = ctx.actor, now_utc(), reason.strip()
    ctx.audit(db, "alert.hold", f"alert:{alert_id}", {"reason": review.hold_reason})
    return review


# ----- retention -----


@dataclass(frozen=True)
class PurgeReport:
    snapshots_destroyed: list[int]
    probes_purged: list[int]
    expired_entries_removed: list[str]  # "watchlist/reference id" of each person removed

    @property
    def anything(self) -> bool:
        return bool(self.snapshots_destroyed or self.probes_purged or self.expired_entries_removed)

    def summary(self) -> str:
        return (
            f"destroyed {len(self.snapshots_destroyed)} watchlist snapshot(s), "
            f"purged {len(self.probes_purged)} probe image(s), "
            f"removed {len(self.expired_entries_removed)} expired watchlist entr(ies)"
        )

    def as_dict(self) -> dict[str, list[int] | list[str]]:
        return {
            "snapshots_destroyed": self.snapshots_destroyed,
            "probes_purged": self.probes_purged,
            "expired_entries_removed": self.expired_entries_removed,
        }


def enforce_retention(
    db: Session, ctx: Context, policy: retention.RetentionPolicy, now: datetime | None = None
) -> PurgeReport:
    """Destroy what the retention policy says is due; keep every count, decision and outcome."""
    moment = now or now_utc()
    destroyed: list[int] = []
    candidates = db.scalars(
        select(Deployment).where(Deployment.snapshot_taken_at.is_not(None), Deployment.snapshot_destroyed_at.is_(None))
    ).all()
    for row in candidates:
        if retention.snapshot_due(row, policy, moment):
            people = db.scalar(
                select(func.count()).select_from(SnapshotPerson).where(SnapshotPerson.deployment_id == row.id)
            )
            db.query(SnapshotImage).filter(SnapshotImage.deployment_id == row.id).delete(synchronize_session=False)
            db.query(SnapshotPerson).filter(SnapshotPerson.deployment_id == row.id).delete(synchronize_session=False)
            row.snapshot_destroyed_at = moment
            ctx.audit(db, "retention.snapshot_destroyed", f"deployment:{row.id}", {"people": people})
            destroyed.append(row.id)
    purged: list[int] = []
    cutoff = moment - policy.probe_ttl
    due = db.execute(
        select(Alert.id, Alert.created_at, AlertReview.held_by)
        .outerjoin(AlertReview, AlertReview.alert_id == Alert.id)
        .where(Alert.probe_jpeg.is_not(None), Alert.created_at <= cutoff, AlertReview.held_by.is_(None))
    ).all()
    for alert_id, created_at, held_by in due:
        if retention.probe_due(created_at, held_by is not None, policy, moment):
            db.execute(update(Alert).where(Alert.id == alert_id).values(probe_jpeg=None))
            purged.append(alert_id)
    for alert_id in purged:
        try:
            review = review_for(db, alert_id)
        except NotFound:
            continue  # an alert outside any deployment (a bare `openlfr scan`): its image is gone all the same
        _saved(db, review).probe_purged_at = moment
    if purged:
        ctx.audit(db, "retention.probes_purged", "alerts", {"alerts": purged})
    return PurgeReport(destroyed, purged, remove_expired_entries(db, ctx, policy, moment))


def remove_expired_entries(db: Session, ctx: Context, policy: retention.RetentionPolicy, now: datetime) -> list[str]:
    """Delete people (with photos and embeddings) whose listing expired longer ago than the policy allows."""
    due = db.scalars(
        select(Person).where(not_(Person.listed_at(retention.expired_entry_cutoff(policy, now)))).order_by(Person.id)
    ).all()
    removed: dict[str, list[str]] = {}
    for person in due:
        removed.setdefault(person.watchlist.name, []).append(person.reference_id)
        db.delete(person)
    db.flush()
    for watchlist_name, people in removed.items():
        ctx.audit(db, "retention.expired_entries_removed", f"watchlist:{watchlist_name}", {"people": people})
    return [f"{name}/{ref}" for name, people in removed.items() for ref in people]
