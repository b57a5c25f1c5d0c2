"""The decision page (issue 20, item 2): a note with each step of an alert's review, the count of steps undone,
and up to three crops of the track's best looks per alert (``alert_looks``, kept under the probe's rules).

Revision ID: 0014_review_notes
Revises: 0013_camera_state
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_review_notes"
down_revision: str | Sequence[str] | None = "0013_camera_state"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alert_reviews") as table:
        table.add_column(sa.Column("decision_note", sa.Text(), nullable=True))
        table.add_column(sa.Column("verification_note", sa.Text(), nullable=True))
        table.add_column(sa.Column("outcome_note", sa.Text(), nullable=True))
        table.add_column(sa.Column("undos", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "alert_looks",
        sa.Column(
            "alert_id",
            sa.Integer(),
            sa.ForeignKey("alerts.id", ondelete="CASCADE", name="fk_alert_looks_alert"),
            primary_key=True,
        ),
        sa.Column("position", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("quality", sa.Double(), nullable=False),
        sa.Column("image_jpeg", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("alert_looks")
    with op.batch_alter_table("alert_reviews") as table:
        for column in ("undos", "outcome_note", "verification_note", "decision_note"):
            table.drop_column(column)
