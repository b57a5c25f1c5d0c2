"""The audit log keeps the clock's own reading beside each entry's date (``clock_at``): an entry is dated no
earlier than the one before it, so a clock set back shows as a reading earlier than the date. Entries written
before have none (NULL) and are verified as they were hashed.

Revision ID: 0011_audit_clock
Revises: 0010_coverage
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from openlfr.store.db import UTCDateTime

revision: str = "0011_audit_clock"
down_revision: str | Sequence[str] | None = "0010_coverage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log") as table:
        table.add_column(sa.Column("clock_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_log") as table:
        table.drop_column("clock_at")
