"""The operator server's tables: accounts, sessions, login throttling, deployments and their watchlist snapshots,
the human review of alerts, the hash-chained audit log and its head, console settings.

Revision ID: 0002_governance
Revises: 0001_watchlists
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from openlfr.store.db import Float32Vector, UTCDateTime

revision: str = "0002_governance"
down_revision: str | Sequence[str] | None = "0001_watchlists"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )
    op.create_table(
        "user_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_user_sessions_user"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_user_sessions_user_id", "user_sessions", ["user_id"])
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_login_failures_username_at", "login_failures", ["username", "at"])
    op.create_index("ix_login_failures_ip_at", "login_failures", ["ip", "at"])
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("place", sa.String(300), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("starts_at", UTCDateTime(), nullable=False),
        sa.Column("ends_at", UTCDateTime(), nullable=False),
        sa.Column("cameras", sa.JSON(), nullable=False),
        sa.Column("watchlist_name", sa.String(200), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=True),
        sa.Column("target_fpir", sa.Double(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("authorised_by", sa.String(64), nullable=True),
        sa.Column("authorised_at", UTCDateTime(), nullable=True),
        sa.Column("justification", sa.Text(), nullable=True),
        sa.Column("cancelled_by", sa.String(64), nullable=True),
        sa.Column("cancelled_at", UTCDateTime(), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("ended_by", sa.String(64), nullable=True),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column("snapshot_taken_at", UTCDateTime(), nullable=True),
        sa.Column("snapshot_destroyed_at", UTCDateTime(), nullable=True),
        sa.Column("effective_threshold", sa.Double(), nullable=True),
        sa.Column("threshold_note", sa.Text(), nullable=True),
        sa.Column("watchlist_size", sa.Integer(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("faces_seen", sa.Integer(), nullable=False),
        sa.Column("tracks", sa.Integer(), nullable=False),
        sa.Column("alerts_raised", sa.Integer(), nullable=False),
        sa.Column("pipeline_note", sa.Text(), nullable=True),
    )
    op.create_index("ix_deployments_status", "deployments", ["status"])
    op.create_table(
        "snapshot_people",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "deployment_id",
            sa.Integer(),
            sa.ForeignKey("deployments.id", ondelete="CASCADE", name="fk_snapshot_people_deployment"),
            nullable=False,
        ),
        sa.Column("person_ref", sa.String(200), nullable=False),
        sa.Column("display_name", sa.String(300), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
    )
    op.create_index("ix_snapshot_people_deployment_id", "snapshot_people", ["deployment_id"])
    op.create_table(
        "snapshot_images",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "person_id",
            sa.Integer(),
            sa.ForeignKey("snapshot_people.id", ondelete="CASCADE", name="fk_snapshot_images_person"),
            nullable=False,
        ),
        sa.Column(
            "deployment_id",
            sa.Integer(),
            sa.ForeignKey("deployments.id", ondelete="CASCADE", name="fk_snapshot_images_deployment"),
            nullable=False,
        ),
        sa.Column("image_jpeg", sa.LargeBinary(), nullable=True),
        sa.Column("embedding", Float32Vector(), nullable=False),
        sa.Column("model_id", sa.String(200), nullable=False),
        sa.Column("source_image_id", sa.Integer(), nullable=True),
    )
    op.create_index("ix_snapshot_images_person_id", "snapshot_images", ["person_id"])
    op.create_index("ix_snapshot_images_deployment_id", "snapshot_images", ["deployment_id"])
    op.create_table(
        "alert_reviews",
        sa.Column("alert_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column(
            "deployment_id",
            sa.Integer(),
            sa.ForeignKey("deployments.id", name="fk_alert_reviews_deployment"),
            nullable=False,
        ),
        sa.Column("alert_at", UTCDateTime(), nullable=False),
        sa.Column("person_ref", sa.String(200), nullable=False),
        sa.Column("decision", sa.String(16), nullable=True),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("verified_by", sa.String(64), nullable=True),
        sa.Column("verified_at", UTCDateTime(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("outcome_by", sa.String(64), nullable=True),
        sa.Column("outcome_at", UTCDateTime(), nullable=True),
        sa.Column("held_by", sa.String(64), nullable=True),
        sa.Column("held_at", UTCDateTime(), nullable=True),
        sa.Column("hold_reason", sa.Text(), nullable=True),
        sa.Column("probe_purged_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_alert_reviews_deployment_id", "alert_reviews", ["deployment_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("seq", name="uq_audit_log_seq"),
    )
    op.create_index("ix_audit_log_action", "audit_log", ["action"])
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS}])
    op.create_table(
        "console_settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("changed_by", sa.String(64), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "console_settings",
        "audit_head",
        "audit_log",
        "alert_reviews",
        "snapshot_images",
        "snapshot_people",
        "deployments",
        "login_failures",
        "user_sessions",
        "users",
    ):
        op.drop_table(table)
