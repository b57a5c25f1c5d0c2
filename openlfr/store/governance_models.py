"""Tables of the operator server: accounts and sessions, deployments and their watchlist snapshots, the human
review of alerts, the audit log, and console settings.

The deployment row is the public record: it keeps counts (watchlist size, faces seen, alerts) after every
purge. Biometric data lives only in ``snapshot_images`` (destroyed after the deployment) and in the alert's
probe image (purged after the retention period).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import JSON, Boolean, Double, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from openlfr.clock import utc_now
from openlfr.store.db import Base, Float32Vector, UTCDateTime


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("username", name="uq_users_username"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    created_by: Mapped[str] = mapped_column(String(64), default="")


class UserSession(Base):
    """A browser session (cookie, needs CSRF) or an API token (bearer, no cookie). Only the token's hash is kept."""

    __tablename__ = "user_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE", name="fk_user_sessions_user"), index=True
    )
    kind: Mapped[str] = mapped_column(String(8), default="cookie")  # "cookie" | "token"
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(lazy="joined")


class LoginFailure(Base):
    """Failed logins, counted by user name and by address to throttle guessing."""

    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_username_at", "username", "at"),
        Index("ix_login_failures_ip_at", "ip", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)


class Deployment(Base):
    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    place: Mapped[str] = mapped_column(String(300))
    purpose: Mapped[str] = mapped_column(Text)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # [{"name": "entrance", "source": "rtsp://..."}]
    cameras: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # The configured sinks (``OPENLFR_SINKS``) its alerts and decisions go to, by name: part of what is authorised.
    sinks: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    watchlist_name: Mapped[str] = mapped_column(String(200))
    threshold: Mapped[float | None] = mapped_column(Double, nullable=True)
    target_fpir: Mapped[float | None] = mapped_column(Double, nullable=True)

    status: Mapped[str] = mapped_column(String(16), default="draft", index=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
    authorised_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    authorised_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    justification: Mapped[str | None] = mapped_column(Text, nullable=True)
    cancelled_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cancel_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    ended_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    # The snapshot of the watchlist the authoriser approved; destroyed after the deployment.
    snapshot_taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    snapshot_destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    effective_threshold: Mapped[float | None] = mapped_column(Double, nullable=True)
    threshold_note: Mapped[str | None] = mapped_column(Text, nullable=True)

    # The public record: counts survive every purge.
    watchlist_size: Mapped[int] = mapped_column(Integer, default=0)
    frames: Mapped[int] = mapped_column(Integer, default=0)
    faces_seen: Mapped[int] = mapped_column(Integer, default=0)
    tracks: Mapped[int] = mapped_column(Integer, default=0)
    alerts_raised: Mapped[int] = mapped_column(Integer, default=0)
    pipeline_note: Mapped[str | None] = mapped_column(Text, nullable=True)

    # "live" (cameras, in real time) or "retrospective" (recorded files, as fast as the machine allows).
    kind: Mapped[str] = mapped_column(String(16), default="live", server_default="live")
    # An urgent retrospective search runs before it is authorised; unauthorised at this moment, its alerts are
    # destroyed (``authorisation_lapsed_at``). None: it waits for its authorisation like any other.
    urgent_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    urgent_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    authorisation_lapsed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A retrospective search's progress: seconds of footage in its files, seconds analysed so far.
    media_seconds: Mapped[float | None] = mapped_column(Double, nullable=True)
    media_done_seconds: Mapped[float] = mapped_column(Double, default=0.0, server_default="0")
    media_frames: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the frames its files promise
    # Once processed: the share of its footage actually decoded and analysed (a truncated file reads less than 1).
    coverage: Mapped[float | None] = mapped_column(Double, nullable=True)
    processing_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    processing_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SnapshotPerson(Base):
    __tablename__ = "snapshot_people"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE", name="fk_snapshot_people_deployment"), index=True
    )
    person_ref: Mapped[str] = mapped_column(String(200))
    display_name: Mapped[str] = mapped_column(String(300))
    category: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    # The listing's own end, copied at authorisation: the deployment's gallery stops matching the person then,
    # even inside the window (``openlfr.watchlist.search.Gallery`` drops their references at that instant).
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)

    images: Mapped[list[SnapshotImage]] = relationship(
        back_populates="person", cascade="all, delete-orphan", passive_deletes=True
    )


class SnapshotImage(Base):
    __tablename__ = "snapshot_images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(
        ForeignKey("snapshot_people.id", ondelete="CASCADE", name="fk_snapshot_images_person"), index=True
    )
    deployment_id: Mapped[int] = mapped_column(
        ForeignKey("deployments.id", ondelete="CASCADE", name="fk_snapshot_images_deployment"), index=True
    )
    image_jpeg: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    embedding: Mapped[np.ndarray] = mapped_column(Float32Vector())
    model_id: Mapped[str] = mapped_column(String(200))
    source_image_id: Mapped[int | None] = mapped_column(Integer, nullable=True)

    person: Mapped[SnapshotPerson] = relationship(back_populates="images")


class AlertReview(Base):
    """The human side of one alert: which deployment raised it, the decision, the second check, the outcome."""

    __tablename__ = "alert_reviews"

    alert_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    deployment_id: Mapped[int] = mapped_column(
        ForeignKey("deployments.id", name="fk_alert_reviews_deployment"), index=True
    )
    alert_at: Mapped[datetime] = mapped_column(UTCDateTime)
    person_ref: Mapped[str] = mapped_column(String(200), default="")
    decision: Mapped[str | None] = mapped_column(String(16), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    verified_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)
    outcome_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    outcome_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    held_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    held_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    hold_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    probe_purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # What each person wrote with their step (optional, visible text only; also in the step's audit entry).
    decision_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    verification_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    outcome_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    # How many steps were undone (within the undo window): a step taken again is a new event for the sinks.
    undos: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class AuditEntry(Base):
    """Append-only. Each entry's ``hash`` chains it to the one before (see ``openlfr.governance.audit``)."""

    __tablename__ = "audit_log"
    __table_args__ = (UniqueConstraint("seq", name="uq_audit_log_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime)  # never before the entry before it: time runs forward
    # The clock's own reading when the entry was written (earlier than ``at`` only if the clock was set back);
    # None for entries written before it was kept.
    clock_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    actor: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """One row: the last sequence number and hash written. Appending locks it, so the chain never forks."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class ConsoleSetting(Base):
    __tablename__ = "console_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    changed_by: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utc_now)
