"""The transactional outbox (``deliveries``): one row per event and sink, written in the transaction that commits
what it announces, sent by the delivery workers; it replaces ``alert_deliveries``, the ledger of the sinks that
only ``openlfr scan`` had (its rows were kept by sink URL, not by a configured sink, and are not carried over). A
deployment names the sinks its events go to (``deployments.sinks``).

Revision ID: 0012_outbox
Revises: 0011_audit_clock
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from openlfr.store.db import UTCDateTime

revision: str = "0012_outbox"
down_revision: str | Sequence[str] | None = "0011_audit_clock"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("sink", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_by", sa.String(200), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("given_up_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.UniqueConstraint("sink", "key", name="uq_deliveries_sink_key"),
    )
    op.create_index("ix_deliveries_deployment_id", "deliveries", ["deployment_id"])
    op.create_index("ix_deliveries_pending", "deliveries", ["sink", "delivered_at", "given_up_at"])
    op.drop_index("ix_alert_deliveries_alert_id", table_name="alert_deliveries")
    op.drop_table("alert_deliveries")
    with op.batch_alter_table("deployments") as table:
        table.add_column(sa.Column("sinks", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("deployments") as table:
        table.drop_column("sinks")
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
    op.drop_index("ix_deliveries_pending", table_name="deliveries")
    op.drop_index("ix_deliveries_deployment_id", table_name="deliveries")
    op.drop_table("deliveries")
