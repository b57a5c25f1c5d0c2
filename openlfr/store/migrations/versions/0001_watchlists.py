"""Watchlists, the people on them, and their reference images.

Revision ID: 0001_watchlists
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from openlfr.store.db import Float32Vector, UTCDateTime

revision: str = "0001_watchlists"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CATEGORIES = ("wanted_court", "wanted_offence", "sex_offender_conditions", "missing_vulnerable", "other")


def upgrade() -> None:
    op.create_table(
        "watchlists",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("name", name="uq_watchlists_name"),
    )
    op.create_table(
        "watchlist_people",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "watchlist_id",
            sa.Integer(),
            sa.ForeignKey("watchlists.id", ondelete="CASCADE", name="fk_watchlist_people_watchlist"),
            nullable=False,
        ),
        sa.Column("reference_id", sa.String(100), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("legal_basis", sa.Text(), nullable=False),
        sa.Column("added_by", sa.String(100), nullable=False),
        sa.Column("added_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("watchlist_id", "reference_id", name="uq_watchlist_people_reference"),
        sa.CheckConstraint(f"category IN {CATEGORIES!r}", name="ck_watchlist_people_category"),
    )
    op.create_index("ix_watchlist_people_active", "watchlist_people", ["watchlist_id", "expires_at"])
    op.create_table(
        "reference_images",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "person_id",
            sa.Integer(),
            sa.ForeignKey("watchlist_people.id", ondelete="CASCADE", name="fk_reference_images_person"),
            nullable=False,
        ),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("face_jpeg", sa.LargeBinary(), nullable=False),
        sa.Column("box_left", sa.Integer(), nullable=False),
        sa.Column("box_top", sa.Integer(), nullable=False),
        sa.Column("box_right", sa.Integer(), nullable=False),
        sa.Column("box_bottom", sa.Integer(), nullable=False),
        sa.Column("detector", sa.String(32), nullable=False),
        sa.Column("detector_score", sa.Double(), nullable=False),
        sa.Column("face_height_px", sa.Integer(), nullable=False),
        sa.Column("inter_eye_px", sa.Double(), nullable=False),
        sa.Column("sharpness", sa.Double(), nullable=False),
        sa.Column("yaw_deg", sa.Double(), nullable=False),
        sa.Column("pitch_deg", sa.Double(), nullable=False),
        sa.Column("roll_deg", sa.Double(), nullable=False),
        sa.Column("model_id", sa.String(200), nullable=False),
        sa.Column("embedding", Float32Vector(), nullable=False),
        sa.Column("added_by", sa.String(100), nullable=False),
        sa.Column("added_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("person_id", "sha256", name="uq_reference_images_file"),
    )
    op.create_index("ix_reference_images_person_model", "reference_images", ["person_id", "model_id"])


def downgrade() -> None:
    op.drop_table("reference_images")
    op.drop_table("watchlist_people")
    op.drop_table("watchlists")
