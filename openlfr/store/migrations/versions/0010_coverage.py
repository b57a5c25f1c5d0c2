"""What a retrospective search actually read: the frames its files promise (``media_frames``, at the draft) and the
share of its footage analysed once it is processed (``coverage``, 0 to 1); per camera, the frames decoded, how far
into the file they reached (``covered_s``) and the footage skipped in between (``gap_s``).

Revision ID: 0010_coverage
Revises: 0009_retrospective
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_coverage"
down_revision: str | Sequence[str] | None = "0009_retrospective"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deployments") as table:
        table.add_column(sa.Column("media_frames", sa.Integer(), nullable=True))
        table.add_column(sa.Column("coverage", sa.Double(), nullable=True))
    with op.batch_alter_table("camera_progress") as table:
        table.add_column(sa.Column("frames", sa.Integer(), nullable=False, server_default="0"))
        table.add_column(sa.Column("covered_s", sa.Float(), nullable=False, server_default="0"))
        table.add_column(sa.Column("gap_s", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("camera_progress") as table:
        for column in ("gap_s", "covered_s", "frames"):
            table.drop_column(column)
    with op.batch_alter_table("deployments") as table:
        for column in ("coverage", "media_frames"):
            table.drop_column(column)
