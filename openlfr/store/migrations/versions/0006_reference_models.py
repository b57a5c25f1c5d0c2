"""A reference photo may carry one embedding per model: its row is unique per (person, file, model).

``openlfr watchlist reembed`` adds, for each photo, a row of the current model beside the old one (same face
picture and enrolment record) so a switch of model back and forth needs no second re-embedding; matching and
snapshots only ever read the rows of one model.

Revision ID: 0006_reference_models
Revises: 0005_photo_searches
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006_reference_models"
down_revision: str | Sequence[str] | None = "0005_photo_searches"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reference_images") as batch:
        batch.drop_constraint("uq_reference_images_file", type_="unique")
        batch.create_unique_constraint("uq_reference_images_file", ["person_id", "sha256", "model_id"])


def downgrade() -> None:
    # Rows of every model but the earliest one per photo go, as the older constraint allows one row per photo.
    op.execute(
        """
        DELETE FROM reference_images WHERE EXISTS (
            SELECT 1 FROM reference_images earlier
             WHERE earlier.person_id = reference_images.person_id AND earlier.sha256 = reference_images.sha256
               AND earlier.id < reference_images.id)
        """
    )
    with op.batch_alter_table("reference_images") as batch:
        batch.drop_constraint("uq_reference_images_file", type_="unique")
        batch.create_unique_constraint("uq_reference_images_file", ["person_id", "sha256"])
