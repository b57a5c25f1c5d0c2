"""Seen and rejected: a new alert whose probe looks more like a face an operator already rejected for the same
person than like the person's references is marked, "likely the person you rejected", with the earlier alert.

The negatives are the probe embeddings of the deployment's alerts for that person whose decision is "not a
match": deployment-scoped, of the same embedding model, and only while the rejected alert keeps its probe
(retention purges the embedding with the probe image, and with the deployment's snapshot). Nothing else is kept:
a face that raised no alert left nothing to compare with. The mark never suppresses an alert; the operator sees
the alert as always, with the mark and a link to the earlier one, and decides.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from openlfr.governance.adjudication import Decision
from openlfr.store.alert_models import Alert
from openlfr.store.governance_models import AlertReview
from openlfr.watchlist.score import match_score

EMBEDDING_DTYPE = np.dtype("<f4")


def embedding_bytes(vector: np.ndarray | None) -> bytes | None:
    """A probe embedding as stored with its alert: little-endian float32."""
    return None if vector is None else np.asarray(vector, dtype=EMBEDDING_DTYPE).reshape(-1).tobytes()


def embedding_of(data: bytes | None) -> np.ndarray | None:
    return None if data is None else np.frombuffer(data, dtype=EMBEDDING_DTYPE)


@dataclass(frozen=True)
class SeenRejected:
    alert_id: int  # the earlier alert an operator decided was not a match
    score: float  # the new probe's match score to that alert's probe


def score_to_references(
    person: Hashable, candidates: Sequence[tuple[Hashable, Hashable, float]], fallback: float
) -> float:
    """The probe's best score to the person's own references (among its candidates), else the alert's score."""
    scores = [float(score) for who, _, score in candidates if str(who) == str(person)]
    return max(scores) if scores else float(fallback)


def likely_rejected(
    session: Session,
    *,
    deployment_id: int | None,
    person_ref: str,
    model_id: str,
    probe: np.ndarray | None,
    to_references: float,
) -> SeenRejected | None:
    """The rejected alert whose probe this probe is closest to, when closer than to the person's references."""
    if deployment_id is None or probe is None:
        return None
    rows = session.execute(
        sa.select(Alert.id, Alert.probe_embedding)
        .join(AlertReview, AlertReview.alert_id == Alert.id)
        .where(
            Alert.deployment_id == deployment_id,
            Alert.person_ref == person_ref,
            Alert.model_id == model_id,
            Alert.probe_embedding.is_not(None),
            AlertReview.decision == Decision.NOT_A_MATCH.value,
        )
        .order_by(Alert.id)
    ).all()
    vector = np.asarray(probe, dtype=np.float32).reshape(-1)
    best: SeenRejected | None = None
    for alert_id, data in rows:
        rejected = embedding_of(data)
        if rejected is None or rejected.shape != vector.shape:
            continue
        score = float(match_score(float(np.dot(vector, rejected)), model_id))
        if score > to_references and (best is None or score > best.score):
            best = SeenRejected(alert_id=int(alert_id), score=round(score, 4))
    return best


def forget_marks_of(session: Session, alert_ids: Sequence[int]) -> None:
    """The marks that point at these alerts go with their probes: nothing is left to compare or show."""
    if alert_ids:
        session.execute(
            sa.update(Alert)
            .where(Alert.seen_rejected_alert_id.in_(list(alert_ids)))
            .values(seen_rejected_alert_id=None, seen_rejected_score=None)
        )


@dataclass(frozen=True)
class SeenRejectedMark:
    """The mark as shown: "likely the person you rejected at <rejected_at> (score <score> to that face)"."""

    alert_id: int  # the earlier alert, linked from the mark
    score: float
    seen_at: datetime  # when that earlier face was seen
    rejected_at: datetime | None  # when an operator decided "not a match" on it


def mark_of(session: Session, alert: Alert) -> SeenRejectedMark | None:
    """The alert's stored mark, shown while the earlier alert keeps its probe and its "not a match" decision
    (undone since, the mark is not shown: the operator's rejection is what it reports)."""
    if alert.seen_rejected_alert_id is None or alert.seen_rejected_score is None:
        return None
    row = session.execute(
        sa.select(Alert.seen_at, AlertReview.decided_at)
        .join(AlertReview, AlertReview.alert_id == Alert.id)
        .where(
            Alert.id == alert.seen_rejected_alert_id,
            Alert.probe_jpeg.is_not(None),
            AlertReview.decision == Decision.NOT_A_MATCH.value,
        )
    ).first()
    if row is None:
        return None
    return SeenRejectedMark(
        alert_id=alert.seen_rejected_alert_id,
        score=float(alert.seen_rejected_score),
        seen_at=row[0],
        rejected_at=row[1],
    )
