"""Deployments: draft, authorise (freezing the watchlist snapshot the authoriser approved), cancel, end, close
the windows that are over (and lapse the urgent retrospective searches nobody authorised in time, see
``openlfr.services.retrospective``), and add the pipeline's counts. Each checks the governance rules
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
from openlfr.governance.deployments import GovernanceError, Kind, TransitionRefused
from openlfr.services import camera_secrets, footage, retrospective, watchlists
from openlfr.services.context import Context
from openlfr.services.live import resolve_threshold
from openlfr.services.second_opinion import fallback_note, fused_threshold
from openlfr.store.governance_models import Deployment, SnapshotImage, SnapshotPerson
from openlfr.store.watchlists import ListedImage, ListedPerson
from openlfr.urls import CameraHostRefused, check_camera_host
from openlfr.vision.engine import model_id_for, second_model_id
from openlfr.watchlist.calibration import CalibrationError
from openlfr.watchlist.search import searched_entries


def apply(row: object, changes: dict[str, Any]) -> None:
    """Set the fields a governance rule returned."""
    for name, value in changes.items():
        setattr(row, name, value)


# ----- deployments -----


def all_deployments(db: Session) -> list[Deployment]:
    """Every deployment, the latest window first (the API's list and the console's)."""
    return list(db.scalars(select(Deployment).order_by(Deployment.starts_at.desc(), Deployment.id.desc())))


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
    kind: str = Kind.LIVE.value,
    urgent_reason: str | None = None,
    sinks: list[str] | None = None,
) -> Deployment:
    """A draft; a retrospective one's files are checked and measured, and an urgent one (``urgent_reason``) takes
    its snapshot now, for it runs before its authorisation."""
    retrospective_search = Kind(kind) is Kind.RETROSPECTIVE
    if urgent_reason is not None and not retrospective_search:
        raise GovernanceError("only a retrospective search can be urgent; a live deployment waits for its authoriser")
    if urgent_reason is not None and len(urgent_reason.strip()) < deployments.MIN_JUSTIFICATION_CHARS:
        raise GovernanceError(
            f"say in at least {deployments.MIN_JUSTIFICATION_CHARS} characters why this search cannot wait for "
            "its authorisation"
        )
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
    sinks = _known_sinks(ctx, sinks or [])
    media = None
    if retrospective_search:  # each file checked; stored as shown (no path on the server), opened by the capture
        media, cameras = retrospective.check_sources(ctx.settings, cameras)
    if not retrospective_search:  # a network camera: only on a host the admin allows
        for camera in cameras:
            try:
                check_camera_host(str(camera.get("source", "")), ctx.settings.camera_allowed_hosts)
            except CameraHostRefused as refused:
                raise GovernanceError(f"camera {camera.get('name')!r}: {refused}") from None
    moment = utc_now()
    within = ctx.settings.rfr_authorise_within_hours
    row = Deployment(
        name=name.strip(),
        place=place.strip(),
        purpose=purpose.strip(),
        starts_at=utc(starts_at),
        ends_at=utc(ends_at),
        cameras=camera_secrets.sealed(ctx.settings, cameras),
        watchlist_name=watchlist,
        sinks=sinks,
        threshold=threshold,
        target_fpir=target_fpir,
        status=deployments.Status.DRAFT.value,
        created_by=ctx.actor,
        created_at=moment,
        kind=Kind(kind).value,
        media_seconds=None if media is None else media.seconds,
        media_frames=None if media is None else media.frames,
        urgent_reason=None if urgent_reason is None else urgent_reason.strip(),
        urgent_until=None if urgent_reason is None else deployments.urgent_deadline(moment, within),
    )
    db.add(row)
    db.flush()
    details: dict[str, Any] = {
        "name": row.name,
        "place": row.place,
        "watchlist": watchlist,
        "starts_at": row.starts_at.isoformat(),
        "kind": row.kind,
        "sinks": sinks,
    }
    if row.urgent_until is not None:
        # Said plainly in the audit: this search matches before anybody authorised it.
        details |= {
            "runs_before_authorisation": True,
            "urgent_reason": row.urgent_reason,
            "authorise_by": row.urgent_until.isoformat(),
        }
    ctx.audit(db, "deployment.draft", f"deployment:{row.id}", details)
    if row.urgent_until is not None:
        size, people, chosen = freeze_snapshot(db, ctx, row, moment)
        ctx.audit(
            db,
            "deployment.urgent_snapshot",
            f"deployment:{row.id}",
            {"watchlist_size": size, "people": people, "threshold": chosen},
        )
    return row


def _known_sinks(ctx: Context, names: list[str]) -> list[str]:
    """The sinks a draft names: each configured on this server (``OPENLFR_SINKS``), each once."""
    unknown = [name for name in names if name not in ctx.settings.sinks]
    if unknown:
        known = ", ".join(sorted(ctx.settings.sinks)) or "none"
        raise GovernanceError(f"no sink named {unknown[0]!r} is configured on this server (configured: {known})")
    return list(dict.fromkeys(names))


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
    # Where its alerts and decisions go is part of what the authoriser approves.
    details: dict[str, Any] = {"justification": row.justification, "sinks": list(row.sinks or [])}
    if row.urgent_until is not None and row.snapshot_taken_at is not None:
        # What is authorised is what ran (or runs): the snapshot taken at the urgent draft.
        details |= {
            "urgent": True,
            "ran_before_authorisation": row.processing_started_at is not None,
            "watchlist_size": row.watchlist_size,
            "threshold": row.effective_threshold,
        }
        retrospective.end_processed(row, moment)
    else:
        size, people, chosen = freeze_snapshot(db, ctx, row, moment)
        details |= {"watchlist_size": size, "people": people, "threshold": chosen}
    ctx.audit(db, "deployment.authorise", f"deployment:{row.id}", details)
    return row


def freeze_snapshot(db: Session, ctx: Context, row: Deployment, moment: datetime) -> tuple[int, int, float]:
    """Copy the watchlist's listed people and embeddings into the deployment's snapshot; (images, people,
    threshold)."""
    # The snapshot holds the embeddings of the model this installation matches with, and must hold everyone.
    model_id = model_id_for(ctx.settings)
    people = watchlists.active_people(db, row.watchlist_name, moment, model_id)
    if not people:
        raise TransitionRefused(f"watchlist {row.watchlist_name!r} has nobody on it who has not expired")
    missing = [person.reference_id for person in people if not person.images]
    deployments.check_snapshot_complete(row.watchlist_name, model_id, missing)
    second, second_note = _second_opinion_images(db, ctx, row, moment, people)
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
    searched = searched_entries(ctx.settings, size, len(people))  # the N the live gallery will search
    chosen, note = resolve_threshold(ctx.settings, model_id, searched, row.threshold, row.target_fpir)
    if second:
        try:
            second_id = next(image.model_id for images in second.values() for image in images)
            chosen, note = fused_threshold(ctx.settings, model_id, second_id, searched, row.threshold, row.target_fpir)
        except CalibrationError as exc:
            second, second_note = {}, f"second opinion off: {exc}"
    note = f"{note}; {second_note}" if second_note else note
    # The second model's rows follow the first's (the live path tells them apart so): a snapshot holding them
    # runs with the second opinion, its threshold being the fused score's.
    for snap_id, images in _snapshot_ids(db, row.id, second).items():
        for image in images:
            db.add(
                SnapshotImage(
                    person_id=snap_id,
                    deployment_id=row.id,
                    image_jpeg=None,
                    embedding=image.embedding,
                    model_id=image.model_id,
                    source_image_id=image.image_id,
                )
            )
    row.snapshot_taken_at = moment
    row.watchlist_size = size
    row.effective_threshold = chosen
    row.threshold_note = note
    return size, len(people), chosen


def _second_opinion_images(
    db: Session, ctx: Context, row: Deployment, moment: datetime, people: list[ListedPerson]
) -> tuple[dict[str, list[ListedImage]], str]:
    """The second model's images of every listed person (by reference id), or none and a note saying why."""
    second_id = second_model_id(ctx.settings)
    if second_id is None:
        return {}, ""
    found = {p.reference_id: p.images for p in watchlists.active_people(db, row.watchlist_name, moment, second_id)}
    missing = [p.reference_id for p in people if not found.get(p.reference_id)]
    if missing:
        return {}, fallback_note(row.watchlist_name, list(missing), second_id)
    return found, ""


def _snapshot_ids(
    db: Session, deployment_id: int, images: dict[str, list[ListedImage]]
) -> dict[int, list[ListedImage]]:
    if not images:
        return {}
    people = db.scalars(select(SnapshotPerson).where(SnapshotPerson.deployment_id == deployment_id))
    return {p.id: images[p.person_ref] for p in people if p.person_ref in images}


def cancel(db: Session, ctx: Context, deployment_id: int, reason: str) -> Deployment:
    row = get_deployment(db, deployment_id)
    apply(row, deployments.cancel(row, ctx.actor, reason, utc_now()))
    ctx.audit(db, "deployment.cancel", f"deployment:{row.id}", {"reason": row.cancel_reason})
    return row


def end(db: Session, ctx: Context, deployment_id: int, reason: str | None = None) -> Deployment:
    row = get_deployment(db, deployment_id)
    apply(row, deployments.end(row, ctx.actor, utc_now()))
    ctx.audit(db, "deployment.end", f"deployment:{row.id}", {"reason": reason} if reason else {})
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
    retrospective.lapse_unauthorised(db, ctx, moment)
    footage.sweep(db, ctx, moment)
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
    may_run = (Deployment.status == deployments.Status.AUTHORISED.value) | Deployment.urgent_until.is_not(None)
    rows = db.scalars(select(Deployment).where(may_run))
    return [row for row in rows if deployments.may_match(row, moment)]
