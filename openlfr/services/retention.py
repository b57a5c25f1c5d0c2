"""Retention enforced by code: what is due is destroyed (watchlist snapshots, alert probe images with the track's
best looks kept beside them, expired watchlist entries) and audited, while every count, decision and outcome
stays. ``enforce_once`` is ``openlfr retention run`` and one round of the server's loop
(``openlfr.runtime.background.RetentionLoop``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, func, not_, select, update
from sqlalchemy.orm import Session

from openlfr.alerts import outbox
from openlfr.alerts.seen_rejected import forget_marks_of
from openlfr.clock import utc_now
from openlfr.governance import retention
from openlfr.governance.retention import RetentionPolicy
from openlfr.services import deployments, photo_search
from openlfr.services.audit_log import audit_key
from openlfr.services.context import Context
from openlfr.services.reviews import claim_probe_purge
from openlfr.settings import Settings
from openlfr.store import Store
from openlfr.store.alert_models import Alert, AlertLook
from openlfr.store.governance_models import (
    AlertReview,
    Deployment,
    LoginFailure,
    SnapshotImage,
    SnapshotPerson,
    UserSession,
)
from openlfr.store.models import Person

log = logging.getLogger(__name__)


def policy_of(settings: Settings) -> RetentionPolicy:
    return RetentionPolicy.from_seconds(
        settings.snapshot_retention_seconds,
        settings.probe_retention_seconds,
        settings.expired_entry_retention_seconds,
    )


@dataclass(frozen=True)
class PurgeReport:
    snapshots_destroyed: list[int]
    probes_purged: list[int]
    expired_entries_removed: list[str]  # "watchlist/reference id" of each person removed
    search_probes_purged: list[int] = field(default_factory=list)  # photo searches recorded for an investigation

    @property
    def anything(self) -> bool:
        return bool(
            self.snapshots_destroyed or self.probes_purged or self.expired_entries_removed or self.search_probes_purged
        )

    def summary(self) -> str:
        return (
            f"destroyed {len(self.snapshots_destroyed)} watchlist snapshot(s), "
            f"purged {len(self.probes_purged)} probe image(s), "
            f"removed {len(self.expired_entries_removed)} expired watchlist entr(ies), "
            f"purged {len(self.search_probes_purged)} photo-search probe image(s)"
        )

    def as_dict(self) -> dict[str, list[int] | list[str]]:
        return {
            "snapshots_destroyed": self.snapshots_destroyed,
            "probes_purged": self.probes_purged,
            "expired_entries_removed": self.expired_entries_removed,
            "search_probes_purged": self.search_probes_purged,
        }


def enforce_retention(db: Session, ctx: Context, policy: RetentionPolicy, now: datetime | None = None) -> PurgeReport:
    """Destroy what the retention policy says is due; keep every count, decision and outcome."""
    moment = now or utc_now()
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
            # The deployment's negatives ("seen and rejected") go with its snapshot; the probe images stay theirs.
            db.execute(update(Alert).where(Alert.deployment_id == row.id).values(probe_embedding=None))
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
        # Held meanwhile (after ``due`` was read), the probe stays: the claim is judged on the review as it is now.
        if retention.probe_due(created_at, held_by is not None, policy, moment) and claim_probe_purge(
            db, alert_id, moment
        ):
            db.execute(update(Alert).where(Alert.id == alert_id).values(probe_jpeg=None, probe_embedding=None))
            db.execute(delete(AlertLook).where(AlertLook.alert_id == alert_id))  # the looks go with the probe
            purged.append(alert_id)
    if purged:
        forget_marks_of(db, purged)  # "seen and rejected" marks pointing at a purged probe go with it
        ctx.audit(db, "retention.probes_purged", "alerts", {"alerts": purged})
    removed = remove_expired_entries(db, ctx, policy, moment)
    outbox.forget_expired(db, moment)  # events past their alert's probe retention: sent or given up by now
    return PurgeReport(destroyed, purged, removed, photo_search.purge_search_probes(db, ctx, policy, moment))


def remove_expired_entries(db: Session, ctx: Context, policy: RetentionPolicy, now: datetime) -> list[str]:
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


def enforce_once(store: Store, settings: Settings) -> PurgeReport:
    """Close finished deployment windows and purge what retention says is due, in one transaction."""
    ctx = Context.system(settings, audit_key(settings))
    with store.session() as db:
        deployments.close_finished(db, ctx)
        report = enforce_retention(db, ctx, policy_of(settings))
        forget_stale_logins(db, settings)
        return report


def forget_stale_logins(db: Session, settings: Settings) -> None:
    """Expired sessions and tokens, and failed logins older than the throttling window, serve no purpose."""
    moment = utc_now()
    db.execute(delete(UserSession).where(UserSession.expires_at <= moment))
    db.execute(delete(LoginFailure).where(LoginFailure.at < moment - timedelta(seconds=settings.login_window_seconds)))
