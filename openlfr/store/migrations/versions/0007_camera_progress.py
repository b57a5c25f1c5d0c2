"""Camera progress of live deployments (``openlfr.store.progress_models``): where a restarted pipeline resumes.

Revision ID: 0007_camera_progress
Revises: 0006_reference_models
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from openlfr.store.db import UTCDateTime

revision: str = "0007_camera_progress"
down_revision: str | Sequence[str] | None = "0006_reference_models"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "camera_progress",
        sa.Column("deployment_id", sa.Integer(), sa.ForeignKey("deployments.id", ondelete="CASCADE"), nullable=False),
        sa.Column("camera", sa.String(200), nullable=False),
        sa.Column("media_time_s", sa.Float(), nullable=False),
        sa.Column("next_track_id", sa.Integer(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("deployment_id", "camera"),
    )


def downgrade() -> None:
    op.drop_table("camera_progress")
