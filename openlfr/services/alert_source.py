"""What the console shows of an alert: the live pipeline's row (camera, time, track, score, probe crop, top
candidates) and the deployment's watchlist snapshot (the person's category and reason, the reference picture).
Retention destroys the snapshot and the probe; the alert then shows what is left.

An alert of a retrospective search is a sighting in recorded footage, maybe hours or days old: it says so
(``footage`` "recorded footage", ``kind`` "retrospective"), with where in the footage it was (the file, the seconds
into it, and the time in the footage where the file's metadata says when it began) beside when it was processed.
A live alert says "live".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from openlfr.clock import utc
from openlfr.governance.deployments import Kind
from openlfr.services.retrospective import RECORDED_FROM
from openlfr.store.alert_models import Alert
from openlfr.store.governance_models import AlertReview, Deployment, SnapshotImage, SnapshotPerson

RECORDED = "recorded footage"  # what every view of a retrospective search's alert calls its source
LIVE = "live"


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


@dataclass(frozen=True)
class MediaTime:
    """Where in recorded footage a sighting was: the file (as the search names it, never a path on the server), the
    seconds into it, and when the footage began if the file's metadata says (then also the moment in the footage)."""

    file: str
    seconds: float
    started_at: datetime | None = None

    @property
    def at(self) -> datetime | None:
        return None if self.started_at is None else self.started_at + timedelta(seconds=self.seconds)


def media_time(deployment: Deployment | None, alert: Alert) -> MediaTime | None:
    """The alert's place in the footage when it came from a retrospective search; None for a live camera (whose
    stored media time is only the position in its connection, which tells nobody anything)."""
    if deployment is None or deployment.kind != Kind.RETROSPECTIVE.value or alert.media_time_s is None:
        return None
    camera = next((c for c in deployment.cameras if c.get("name") == alert.camera), {})
    began = camera.get(RECORDED_FROM)
    return MediaTime(
        file=str(camera.get("source", "")),
        seconds=float(alert.media_time_s),
        started_at=utc(datetime.fromisoformat(began)) if began else None,
    )


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
    retrospective = deployment is not None and deployment.kind == Kind.RETROSPECTIVE.value
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
        kind=Kind.RETROSPECTIVE.value if retrospective else Kind.LIVE.value,
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
