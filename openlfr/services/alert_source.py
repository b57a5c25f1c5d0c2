"""What the console shows of an alert: the live pipeline's row (camera, time, track, score, probe crop, top
candidates) and the deployment's watchlist snapshot (the person's category and reason, the reference picture).
Retention destroys the snapshot and the probe; the alert then shows what is left.

An alert of a retrospective search says it is recorded footage, and where in it the person was seen, beside when
it was processed (``openlfr.alerts.footage``); a live alert says "live".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from openlfr.alerts.footage import LIVE, RECORDED, MediaTime, is_recorded, media_time
from openlfr.governance.deployments import Kind
from openlfr.store.alert_models import Alert
from openlfr.store.governance_models import AlertReview, Deployment, SnapshotImage, SnapshotPerson


@dataclass(frozen=True)
class AlertFacts:
    camera: str
    track: str
    score: float
    threshold: float
    person_ref: str
    person_name: str
    category: str
    reason: str
    candidates: list[dict[str, Any]] = field(default_factory=list)
    has_probe: bool = False
    has_reference: bool = False
    kind: str = Kind.LIVE.value  # the deployment's: "retrospective" for a search of recorded footage
    media: MediaTime | None = None  # where in the footage, for recorded footage; None for a live camera

    @property
    def footage(self) -> str:
        return RECORDED if self.kind == Kind.RETROSPECTIVE.value else LIVE

    @property
    def media_time(self) -> float | None:
        return None if self.media is None else self.media.seconds

    @property
    def media_file(self) -> str | None:
        return None if self.media is None else self.media.file

    @property
    def media_started_at(self) -> datetime | None:
        return None if self.media is None else self.media.started_at

    @property
    def media_at(self) -> datetime | None:
        return None if self.media is None else self.media.at


def _snapshot_person(db: Session, deployment_id: int, person_ref: str) -> SnapshotPerson | None:
    return db.scalars(
        select(SnapshotPerson).where(
            SnapshotPerson.deployment_id == deployment_id, SnapshotPerson.person_ref == person_ref
        )
    ).first()


def _reference_query(alert: Alert) -> Any:
    return select(SnapshotImage.image_jpeg).where(
        SnapshotImage.id == alert.reference_image_id, SnapshotImage.deployment_id == alert.deployment_id
    )


def facts(db: Session, alert: Alert, review: AlertReview) -> AlertFacts:
    person = _snapshot_person(db, review.deployment_id, alert.person_ref)
    deployment = db.get(Deployment, review.deployment_id)
    has_probe = db.scalar(select(Alert.id).where(Alert.id == alert.id, Alert.probe_jpeg.is_not(None))) is not None
    has_reference = alert.reference_image_id is not None and db.scalar(_reference_query(alert)) is not None
    categories = {
        p.person_ref: p.category
        for p in db.scalars(select(SnapshotPerson).where(SnapshotPerson.deployment_id == review.deployment_id))
    }
    candidates = [
        {
            "person": str(c.get("person", "")),
            "name": str(c.get("name", "")),
            "score": float(c.get("score", 0.0)),
            "category": categories.get(str(c.get("person", "")), ""),
        }
        for c in (alert.candidates or [])
        if isinstance(c, dict) and str(c.get("person", "")) != alert.person_ref
    ]
    return AlertFacts(
        camera=alert.camera,
        track=str(alert.track_id),
        score=float(alert.score),
        threshold=float(alert.threshold),
        person_ref=alert.person_ref,
        person_name=alert.person_name or (person.display_name if person is not None else alert.person_ref),
        category=person.category if person is not None else "",
        reason=person.reason if person is not None else "(watchlist snapshot destroyed)",
        candidates=candidates,
        has_probe=has_probe,
        has_reference=has_reference,
        kind=Kind.RETROSPECTIVE.value if is_recorded(deployment) else Kind.LIVE.value,
        media=media_time(deployment, alert),
    )


def alert_row(db: Session, alert_id: int) -> Alert | None:
    return db.get(Alert, alert_id)


def probe_jpeg(db: Session, alert_id: int) -> bytes | None:
    return db.scalar(select(Alert.probe_jpeg).where(Alert.id == alert_id, Alert.deployment_id.is_not(None)))


def reference_jpeg(db: Session, alert_id: int) -> bytes | None:
    alert = db.get(Alert, alert_id)
    if alert is None or alert.reference_image_id is None or alert.deployment_id is None:
        return None
    data: bytes | None = db.scalar(_reference_query(alert))
    return data
