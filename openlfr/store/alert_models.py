"""The live pipeline's tables: alerts, and the outbox of events for the sinks.

An alert row is written (and committed) before anyone is told about it, so an announced alert always exists.
It is the only place the pipeline writes anything about a face, and only for a face that matched: the probe
crop and up to three more crops of the track's best looks (``AlertLook``), the probe's embedding (all purged by
retention, see ``openlfr.services.retention``), the score, the matched person and the top
candidates. People who raised no alert leave nothing here, not even a row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from openlfr.clock import utc_now
from openlfr.store.db import Base, UTCDateTime


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        sa.UniqueConstraint("uid", name="uq_alerts_uid"),
        # One sighting, one alert: a pipeline restarted on the same frames raises the same (deployment, camera,
        # track, person) again and the writer takes it as already written. Alerts outside a deployment
        # (deployment_id NULL) are not covered: NULLs never collide.
        sa.UniqueConstraint("deployment_id", "camera", "track_id", "person_ref", name="uq_alerts_sighting"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    # A random id for the world outside the database (webhook idempotency keys, MQTT messages).
    uid: Mapped[str] = mapped_column(sa.String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now, index=True)  # committed at
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when the deciding frame arrived
    deployment_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("deployments.id", ondelete="SET NULL", name="fk_alerts_deployment"), nullable=True, index=True
    )
    watchlist_name: Mapped[str] = mapped_column(sa.String(200))
    camera: Mapped[str] = mapped_column(sa.String(200))
    track_id: Mapped[int] = mapped_column(sa.Integer)
    media_time_s: Mapped[float | None] = mapped_column(sa.Double, nullable=True)  # position in a file source
    person_ref: Mapped[str] = mapped_column(sa.String(200))  # the listed person's reference id
    person_name: Mapped[str] = mapped_column(sa.String(300), default="")
    # The reference image that matched best: a snapshot image inside a deployment, else a watchlist image.
    reference_image_id: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    score: Mapped[float] = mapped_column(sa.Double)  # the match score (openlfr.watchlist.score), in [0, 1]
    threshold: Mapped[float] = mapped_column(sa.Double)
    model_id: Mapped[str] = mapped_column(sa.String(200))
    # [{"person": ref, "name": ..., "reference_image_id": ..., "score": ...}], best first
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON, default=list)
    # How the track earned the alert: samples embedded, how many supported the match, time since first seen.
    evidence: Mapped[dict[str, Any]] = mapped_column(sa.JSON, default=dict)
    probe_jpeg: Mapped[bytes | None] = mapped_column(sa.LargeBinary, nullable=True, deferred=True)
    # The probe's embedding (float32 bytes of the model ``model_id``), kept under exactly the probe's rules: written
    # with the alert, purged with ``probe_jpeg`` and with the deployment's snapshot. Rejected by an operator ("not a
    # match"), it is the deployment's negative for this person (``openlfr.alerts.seen_rejected``).
    probe_embedding: Mapped[bytes | None] = mapped_column(sa.LargeBinary, nullable=True, deferred=True)
    # "Seen and rejected": this alert's probe is closer to the probe of an earlier alert for the same person that an
    # operator rejected than to the person's references. Shown to the operator, never used to suppress; cleared
    # when that earlier alert's probe is purged.
    seen_rejected_alert_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("alerts.id", ondelete="SET NULL", name="fk_alerts_seen_rejected"), nullable=True, index=True
    )
    seen_rejected_score: Mapped[float | None] = mapped_column(sa.Double, nullable=True)  # match score to that face
    latency_ms: Mapped[float | None] = mapped_column(sa.Double, nullable=True)  # deciding frame -> commit


class AlertLook(Base):
    """One of the track's best looks (a face crop) kept for an alert's decision page: at most three, best first.
    Kept under exactly the probe's rules: written with the alert or never, purged by retention with the probe
    (never while the alert is held), served only to who may see the probe, never in an event for a sink."""

    __tablename__ = "alert_looks"

    alert_id: Mapped[int] = mapped_column(
        sa.ForeignKey("alerts.id", ondelete="CASCADE", name="fk_alert_looks_alert"), primary_key=True
    )
    position: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)  # 1 is the best
    quality: Mapped[float] = mapped_column(sa.Double)  # the face's quality score that ranked it
    image_jpeg: Mapped[bytes] = mapped_column(sa.LargeBinary, deferred=True)


class Delivery(Base):
    """One event for one sink: the transactional outbox. Written in the transaction that commits what it announces
    (an alert, a decision on it, a camera's change of state), sent by a delivery worker until the sink took it or
    the row expires (``openlfr.alerts.outbox``)."""

    __tablename__ = "deliveries"
    __table_args__ = (
        # One event, one row per sink: the key is what the receiver de-duplicates on (``Idempotency-Key``).
        sa.UniqueConstraint("sink", "key", name="uq_deliveries_sink_key"),
        sa.Index("ix_deliveries_pending", "sink", "delivered_at", "given_up_at"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)  # commit order: sent in this order per deployment
    sink: Mapped[str] = mapped_column(sa.String(200))  # a configured sink's name
    key: Mapped[str] = mapped_column(sa.String(200))  # the event's stable key (an alert's uid, "uid:decision")
    kind: Mapped[str] = mapped_column(sa.String(32))  # alert, decision, verification, outcome, camera
    deployment_id: Mapped[int | None] = mapped_column(sa.Integer, nullable=True, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON)  # never an image, unless the sink's admin opted in
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)  # not sent after this (the alert's probe retention)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the next attempt, not before
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    # Who is sending it, until when: one sender per row across processes (see ``openlfr.alerts.outbox.claim``).
    lease_by: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    given_up_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
