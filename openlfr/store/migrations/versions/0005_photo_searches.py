"""Photo searches recorded for an investigation (``openlfr.store.search_models``); unrecorded searches leave no row.

Revision ID: 0005_photo_searches
Revises: 0004_expiry_and_sightings
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from openlfr.store.db import UTCDateTime

revision: str = "0005_photo_searches"
down_revision: str | Sequence[str] | None = "0004_expiry_and_sightings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "photo_searches",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("searched_at", UTCDateTime(), nullable=False),
        sa.Column("searched_by", sa.String(100), nullable=False),
        sa.Column("investigation", sa.String(100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("watchlist_name", sa.String(200), nullable=False),
        sa.Column("model_id", sa.String(200), nullable=False),
        sa.Column("candidates", sa.JSON(), nullable=False),
        sa.Column("probe_jpeg", sa.LargeBinary(), nullable=True),
        sa.Column("probe_purged_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_photo_searches_searched_at", "photo_searches", ["searched_at"])
    op.create_index("ix_photo_searches_investigation", "photo_searches", ["investigation"])


def downgrade() -> None:
    op.drop_index("ix_photo_searches_investigation", table_name="photo_searches")
    op.drop_index("ix_photo_searches_searched_at", table_name="photo_searches")
    op.drop_table("photo_searches")
