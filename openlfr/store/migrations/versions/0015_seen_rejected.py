"""Seen and rejected (issue 22, item 5): each alert keeps its probe's embedding under the probe's retention, and
the mark "likely the person you rejected" (the earlier alert and the score to its face).

Revision ID: 0015_seen_rejected
Revises: 0014_review_notes
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_seen_rejected"
down_revision: str | Sequence[str] | None = "0014_review_notes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as table:
        table.add_column(sa.Column("probe_embedding", sa.LargeBinary(), nullable=True))
        table.add_column(sa.Column("seen_rejected_alert_id", sa.Integer(), nullable=True))
        table.add_column(sa.Column("seen_rejected_score", sa.Double(), nullable=True))
        table.create_foreign_key(
            "fk_alerts_seen_rejected", "alerts", ["seen_rejected_alert_id"], ["id"], ondelete="SET NULL"
        )
        table.create_index("ix_alerts_seen_rejected_alert_id", ["seen_rejected_alert_id"])


def downgrade() -> None:
    with op.batch_alter_table("alerts") as table:
        table.drop_index("ix_alerts_seen_rejected_alert_id")
        table.drop_constraint("fk_alerts_seen_rejected", type_="foreignkey")
        for column in ("seen_rejected_score", "seen_rejected_alert_id", "probe_embedding"):
            table.drop_column(column)
