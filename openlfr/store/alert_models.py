"""The live pipeline's tables: alerts, and which sink has delivered which alert.

An alert row is written (and committed) before anyone is told about it, so an announced alert always exists.
It is the only place the pipeline writes anything about a face, and only for a face that matched: the probe
crop (purged by retention, see ``openlfr.services.retention``), the score, the matched person and the top
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
    latency_ms: Mapped[float | None] = mapped_column(sa.Double, nullable=True)  # deciding frame -> commit


class AlertDelivery(Base):
    """One (alert, sink) pair: a webhook or broker is told about an alert once, even across restarts."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (sa.UniqueConstraint("alert_id", "sink", name="uq_alert_deliveries_alert_sink"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(
        sa.ForeignKey("alerts.id", ondelete="CASCADE", name="fk_alert_deliveries_alert"), index=True
    )
    sink: Mapped[str] = mapped_column(sa.String(300))  # e.g. "webhook:https://host/path", "mqtt:host:1883/topic"
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
