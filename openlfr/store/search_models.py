"""Photo searches recorded as part of an investigation (``openlfr search ... --investigation REF``).

A photo search leaves no row at all unless the operator records it for an investigation: then this row keeps
what was searched and found (the investigation's reference, the stated reason, the candidates and their scores)
and a JPEG of the searched face region (never the rest of the photo), which retention clears like an alert's
probe image (``OPENLFR_PROBE_RETENTION_SECONDS`` after the search; ``openlfr.services.photo_search``). The probe's
embedding is never stored. Every search, recorded or not, is in the audit log with its reason.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from openlfr.store.db import Base, UTCDateTime


class PhotoSearch(Base):
    __tablename__ = "photo_searches"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    searched_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    searched_by: Mapped[str] = mapped_column(sa.String(100))
    investigation: Mapped[str] = mapped_column(sa.String(100), index=True)  # the force's own reference
    reason: Mapped[str] = mapped_column(sa.Text)
    watchlist_name: Mapped[str] = mapped_column(sa.String(200))
    model_id: Mapped[str] = mapped_column(sa.String(200))
    # [{"person": ref, "name": ..., "reference_image_id": ..., "score": ..., "fmr": ...}], best first
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON, default=list)
    probe_jpeg: Mapped[bytes | None] = mapped_column(sa.LargeBinary, nullable=True, deferred=True)
    probe_purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
