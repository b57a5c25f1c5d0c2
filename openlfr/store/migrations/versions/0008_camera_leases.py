"""Camera leases (``openlfr.store.progress_models``): which worker runs a deployment's camera, until when; a
camera whose source ended is not taken up again; each camera's note for the deployment's page.

Revision ID: 0008_camera_leases
Revises: 0007_camera_progress
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from openlfr.store.db import UTCDateTime

revision: str = "0008_camera_leases"
down_revision: str | Sequence[str] | None = "0007_camera_progress"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("camera_progress") as table:
        table.add_column(sa.Column("held_by", sa.String(200), nullable=True))
        table.add_column(sa.Column("lease_until", UTCDateTime(), nullable=True))
        table.add_column(sa.Column("ended", sa.Boolean(), nullable=False, server_default=sa.false()))
        table.add_column(sa.Column("note", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("camera_progress") as table:
        for column in ("note", "ended", "lease_until", "held_by"):
            table.drop_column(column)
