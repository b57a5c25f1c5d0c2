"""What the console shows of an alert: the live pipeline's row (camera, time, track, score and its calibrated
false-match rate, probe crop and the track's best looks, top candidates) and the deployment's watchlist snapshot
(the person's category and reason, the reference pictures). Retention destroys the snapshot, and the probe with
the looks; the alert then shows what is left.

An alert of a retrospective search says it is recorded footage, and where in it the person was seen, beside when
it was processed (``openlfr.alerts.footage``); a live alert says "live".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from openlfr.alerts.footage import LIVE, RECORDED, MediaTime, is_recorded, media_time
from openlfr.alerts.seen_rejected import SeenRejectedMark, mark_of
from openlfr.governance.deployments import Kind
from openlfr.settings import Settings
from openlfr.store.alert_models import Alert, AlertLook
from openlfr.store.governance_models import AlertReview, Deployment, SnapshotImage, SnapshotPerson
from openlfr.watchlist.calibration import calibrated_rate
from openlfr.watchlist.second_opinion import scored_by


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
    false_match_rate: float | None = None  # of the score, from the model's calibration table; None without one
    false_match_extrapolated: bool = False  # that rate comes from the table's fitted tail, beyond its measurements
    looks: int = 0  # the track's best looks kept with the alert (``AlertLook``), numbered from 1
    references: int = 0  # the person's pictures in the deployment's snapshot, numbered from 1
    kind: str = Kind.LIVE.value  # the deployment's: "retrospective" for a search of recorded footage
    media: MediaTime | None = None  # where in the footage, for recorded footage; None for a live camera
    # "Likely the person you rejected": the probe is closer to a face an operator rejected for this person than to
    # the person's references (``openlfr.alerts.seen_rejected``); None when not, or once that probe is purged.
    seen_rejected: SeenRejectedMark | None = None

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


def _person_images(alert: Alert) -> Any:
    """The listed person's pictures in the alert's deployment snapshot, in enrolment order."""
    return (
        select(SnapshotImage.image_jpeg)
        .join(SnapshotPerson, SnapshotPerson.id == SnapshotImage.person_id)
        .where(
            SnapshotPerson.deployment_id == alert.deployment_id,
            SnapshotPerson.person_ref == alert.person_ref,
            SnapshotImage.image_jpeg.is_not(None),
        )
        .order_by(SnapshotImage.id)
    )


def facts(db: Session, alert: Alert, review: AlertReview, settings: Settings | None = None) -> AlertFacts:
    """What is shown of ``alert``; with ``settings``, its score's calibrated false-match rate too."""
    person = _snapshot_person(db, review.deployment_id, alert.person_ref)
    rate = (
        None
        if settings is None
        else calibrated_rate(
            scored_by(alert.model_id, alert.evidence),
            float(alert.score),
            explicit=settings.calibration_file,
            data_dir=settings.data_dir,
        )
    )
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
        false_match_rate=None if rate is None else rate[0],
        false_match_extrapolated=rate is not None and rate[1],
        looks=db.scalar(select(func.count()).select_from(AlertLook).where(AlertLook.alert_id == alert.id)) or 0,
        references=db.scalar(select(func.count()).select_from(_person_images(alert).subquery())) or 0,
        kind=Kind.RETROSPECTIVE.value if is_recorded(deployment) else Kind.LIVE.value,
        media=media_time(deployment, alert),
        seen_rejected=mark_of(db, alert),
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


def look_jpeg(db: Session, alert_id: int, position: int) -> bytes | None:
    """One of the track's best looks kept with a deployment's alert (1 is the best); None once purged."""
    return db.scalar(
        select(AlertLook.image_jpeg)
        .join(Alert, Alert.id == AlertLook.alert_id)
        .where(AlertLook.alert_id == alert_id, AlertLook.position == position, Alert.deployment_id.is_not(None))
    )


def person_reference_jpeg(db: Session, alert_id: int, position: int) -> bytes | None:
    """The alerted person's ``position``-th picture (from 1) in the deployment's snapshot; None once destroyed."""
    alert = db.get(Alert, alert_id)
    if alert is None or alert.deployment_id is None or position < 1:
        return None
    data: bytes | None = db.scalar(_person_images(alert).offset(position - 1).limit(1))
    return data
