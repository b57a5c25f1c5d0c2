"""A snapshot keeps each listing's expiry; an alert is unique per sighting (deployment, camera, track, person).

Snapshots taken before this revision get the expiry of the watchlist entry they were copied from; an entry
that is gone (removed, or purged after it expired) counts as expired when the snapshot was taken, so it is
never matched again.

Before this revision a restarted pipeline could raise one sighting several times. Those alerts stay (people
may have reviewed them; reviews and audit entries name them), but each repeat after the first gets minus its
alert id as its track id, which no tracker hands out, so the constraint holds and the repeat is recognisable.

Revision ID: 0004_expiry_and_sightings
Revises: 0003_alerts
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from openlfr.store.db import UTCDateTime

revision: str = "0004_expiry_and_sightings"
down_revision: str | Sequence[str] | None = "0003_alerts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("snapshot_people") as batch:
        batch.add_column(sa.Column("expires_at", UTCDateTime(), nullable=True))
    op.execute(
        """
        UPDATE snapshot_people SET expires_at = COALESCE(
            (SELECT p.expires_at FROM watchlist_people p
               JOIN watchlists w ON w.id = p.watchlist_id
               JOIN deployments d ON d.watchlist_name = w.name
              WHERE d.id = snapshot_people.deployment_id AND p.reference_id = snapshot_people.person_ref),
            (SELECT COALESCE(d.snapshot_taken_at, d.starts_at) FROM deployments d
              WHERE d.id = snapshot_people.deployment_id))
        """
    )
    with op.batch_alter_table("snapshot_people") as batch:
        batch.alter_column("expires_at", existing_type=UTCDateTime(), nullable=False)

    op.execute(
        """
        UPDATE alerts SET track_id = -id
         WHERE deployment_id IS NOT NULL AND EXISTS (
            SELECT 1 FROM alerts earlier
             WHERE earlier.deployment_id = alerts.deployment_id AND earlier.camera = alerts.camera
               AND earlier.track_id = alerts.track_id AND earlier.person_ref = alerts.person_ref
               AND earlier.id < alerts.id)
        """
    )
    with op.batch_alter_table("alerts") as batch:
        batch.create_unique_constraint("uq_alerts_sighting", ["deployment_id", "camera", "track_id", "person_ref"])


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_constraint("uq_alerts_sighting", type_="unique")
    with op.batch_alter_table("snapshot_people") as batch:
        batch.drop_column("expires_at")
