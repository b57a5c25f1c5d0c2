"""The live pipeline's tables: alerts and their deliveries to sinks.

Revision ID: 0003_alerts
Revises: 0002_governance
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from openlfr.store.db import UTCDateTime

revision: str = "0003_alerts"
down_revision: str | Sequence[str] | None = "0002_governance"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("uid", sa.String(36), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("seen_at", UTCDateTime(), nullable=False),
        sa.Column(
            "deployment_id",
            sa.Integer(),
            sa.ForeignKey("deployments.id", ondelete="SET NULL", name="fk_alerts_deployment"),
            nullable=True,
        ),
        sa.Column("watchlist_name", sa.String(200), nullable=False),
        sa.Column("camera", sa.String(200), nullable=False),
        sa.Column("track_id", sa.Integer(), nullable=False),
        sa.Column("media_time_s", sa.Double(), nullable=True),
        sa.Column("person_ref", sa.String(200), nullable=False),
        sa.Column("person_name", sa.String(300), nullable=False),
        sa.Column("reference_image_id", sa.Integer(), nullable=True),
        sa.Column("score", sa.Double(), nullable=False),
        sa.Column("threshold", sa.Double(), nullable=False),
        sa.Column("model_id", sa.String(200), nullable=False),
        sa.Column("candidates", sa.JSON(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("probe_jpeg", sa.LargeBinary(), nullable=True),
        sa.Column("latency_ms", sa.Double(), nullable=True),
        sa.UniqueConstraint("uid", name="uq_alerts_uid"),
    )
    op.create_index("ix_alerts_created_at", "alerts", ["created_at"])
    op.create_index("ix_alerts_deployment_id", "alerts", ["deployment_id"])
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "alert_id",
            sa.Integer(),
            sa.ForeignKey("alerts.id", ondelete="CASCADE", name="fk_alert_deliveries_alert"),
            nullable=False,
        ),
        sa.Column("sink", sa.String(300), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.UniqueConstraint("alert_id", "sink", name="uq_alert_deliveries_alert_sink"),
    )
    op.create_index("ix_alert_deliveries_alert_id", "alert_deliveries", ["alert_id"])


def downgrade() -> None:
    op.drop_index("ix_alert_deliveries_alert_id", table_name="alert_deliveries")
    op.drop_table("alert_deliveries")
    op.drop_index("ix_alerts_deployment_id", table_name="alerts")
    op.drop_index("ix_alerts_created_at", table_name="alerts")
    op.drop_table("alerts")
