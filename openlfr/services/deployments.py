"""Deployments: draft, authorise (freezing the watchlist snapshot the authoriser approved), cancel, end, close
the windows that are over, and add the pipeline's counts. Each checks the governance rules
(``openlfr.governance.deployments``), changes the rows and writes the audit entry in the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from openlfr.clock import utc, utc_now
from openlfr.errors import NotFound
from openlfr.governance import deployments
from openlfr.governance.deployments import GovernanceError, TransitionRefused
from openlfr.services import watchlists
from openlfr.services.context import Context
from openlfr.services.live import resolve_threshold
from openlfr.store.governance_models import Deployment, SnapshotImage, SnapshotPerson
from openlfr.vision.engine import model_id_for


def apply(row: object, changes: dict[str, Any]) -> None:
    """Set the fields a governance rule returned."""
    for name, value in changes.items():
        setattr(row, name, value)


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
    if not watchlists.watchlist_exists(db, watchlist):
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
        created_at=utc_now(),
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
    moment = now or utc_now()
    row = get_deployment(db, deployment_id)
    role = ctx.as_role
    if role is None:
        raise TransitionRefused("only a person can authorise a deployment")
    max_hours = ctx.settings.deployment_max_window_hours
    apply(row, deployments.authorise(row, ctx.actor, role, justification, moment, max_hours))
    # The snapshot holds the embeddings of the model this installation matches with, and must hold everyone.
    model_id = model_id_for(ctx.settings)
    people = watchlists.active_people(db, row.watchlist_name, moment, model_id)
    if not people:
        raise TransitionRefused(f"watchlist {row.watchlist_name!r} has nobody on it who has not expired")
    missing = [person.reference_id for person in people if not person.images]
    deployments.check_snapshot_complete(row.watchlist_name, model_id, missing)
    size = 0
    for person in people:
        snap = SnapshotPerson(
            deployment_id=row.id,
            person_ref=person.reference_id,
            display_name=person.display_name,
            category=person.category,
            reason=person.reason,
            expires_at=person.expires_at,
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
            size += 1
    chosen, note = resolve_threshold(ctx.settings, model_id, size, row.threshold, row.target_fpir)
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
    apply(row, deployments.cancel(row, ctx.actor, reason, utc_now()))
    ctx.audit(db, "deployment.cancel", f"deployment:{row.id}", {"reason": row.cancel_reason})
    return row


def end(db: Session, ctx: Context, deployment_id: int) -> Deployment:
    row = get_deployment(db, deployment_id)
    apply(row, deployments.end(row, ctx.actor, utc_now()))
    ctx.audit(db, "deployment.end", f"deployment:{row.id}", {})
    return row


def close_finished(db: Session, ctx: Context, now: datetime | None = None) -> list[int]:
    """Record the end of every authorised deployment whose window has closed."""
    moment = now or utc_now()
    closed = []
    for row in db.scalars(select(Deployment).where(Deployment.status == deployments.Status.AUTHORISED.value)):
        changes = deployments.close_if_over(row, moment)
        if changes:
            apply(row, changes)
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


def live_deployments(db: Session, now: datetime | None = None) -> list[Deployment]:
    """The deployments that may match now (authorised, inside their window, snapshot intact...)."""
    moment = now or utc_now()
    rows = db.scalars(select(Deployment).where(Deployment.status == deployments.Status.AUTHORISED.value))
    return [row for row in rows if deployments.may_match(row, moment)]
