"""Retrospective deployments (RFR): a deployment's kind (``live`` or ``retrospective``: recorded video files
processed as fast as the machine allows), the urgent path (run before authorisation, authorised by
``urgent_until`` or its alerts are destroyed: ``authorisation_lapsed_at``), and the progress of the processing.

Revision ID: 0009_retrospective
Revises: 0008_camera_leases
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from openlfr.store.db import UTCDateTime

revision: str = "0009_retrospective"
down_revision: str | Sequence[str] | None = "0008_camera_leases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_COLUMNS = (
    "kind",
    "urgent_until",
    "urgent_reason",
    "authorisation_lapsed_at",
    "media_seconds",
    "media_done_seconds",
    "processing_started_at",
    "processing_finished_at",
)


def upgrade() -> None:
    with op.batch_alter_table("deployments") as table:
        table.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="live"))
        table.add_column(sa.Column("urgent_until", UTCDateTime(), nullable=True))
        table.add_column(sa.Column("urgent_reason", sa.Text(), nullable=True))
        table.add_column(sa.Column("authorisation_lapsed_at", UTCDateTime(), nullable=True))
        table.add_column(sa.Column("media_seconds", sa.Double(), nullable=True))
        table.add_column(sa.Column("media_done_seconds", sa.Double(), nullable=False, server_default="0"))
        table.add_column(sa.Column("processing_started_at", UTCDateTime(), nullable=True))
        table.add_column(sa.Column("processing_finished_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployments") as table:
        for column in reversed(NEW_COLUMNS):
            table.drop_column(column)
