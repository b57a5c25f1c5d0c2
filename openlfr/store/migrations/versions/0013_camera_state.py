"""Each camera's health (``camera_progress.state``, ``state_since``, ``state_reason``): written by the process
that runs the camera, read by the server answering the API and ``/health`` (issue 18, item 5).

Revision ID: 0013_camera_state
Revises: 0012_outbox
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from openlfr.store.db import UTCDateTime

revision: str = "0013_camera_state"
down_revision: str | Sequence[str] | None = "0012_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("camera_progress") as table:
        table.add_column(sa.Column("state", sa.String(20), nullable=True))
        table.add_column(sa.Column("state_since", UTCDateTime(), nullable=True))
        table.add_column(sa.Column("state_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("camera_progress") as table:
        for column in ("state_reason", "state_since", "state"):
            table.drop_column(column)
