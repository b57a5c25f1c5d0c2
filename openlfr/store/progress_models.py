"""How far each camera of a deployment has been analysed, so that a restarted pipeline resumes instead of
replaying: a file from the last frame whose alerts are committed (less an overlap), a live stream live; the
tracker's next id, so a track id is never given twice within (deployment, camera) and the sighting key
(deployment, camera, track, person) keeps meaning one sighting. Counts and positions only: nothing of a face.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, Session, mapped_column

from openlfr.clock import utc_now
from openlfr.store.db import Base, UTCDateTime


class CameraProgress(Base):
    __tablename__ = "camera_progress"

    deployment_id: Mapped[int] = mapped_column(sa.ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True)
    camera: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    media_time_s: Mapped[float] = mapped_column(sa.Float, nullable=False, default=0.0)
    next_track_id: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=1)
    runs: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)  # pipelines started on this camera
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utc_now)


def load_progress(session: Session, deployment_id: int) -> dict[str, CameraProgress]:
    rows = session.scalars(sa.select(CameraProgress).where(CameraProgress.deployment_id == deployment_id))
    return {row.camera: row for row in rows}


def count_run(session: Session, deployment_id: int, camera: str) -> CameraProgress:
    """A pipeline starts on this camera: its row (created at the start of the file), ``runs`` + 1."""
    row = session.get(CameraProgress, (deployment_id, camera))
    if row is None:
        row = CameraProgress(deployment_id=deployment_id, camera=camera, media_time_s=0.0, next_track_id=1, runs=0)
        session.add(row)
    row.runs += 1
    row.updated_at = utc_now()
    session.flush()
    return row


def save_progress(session: Session, deployment_id: int, camera: str, media_time_s: float, next_track_id: int) -> None:
    """Move a camera's progress forward (never back: a late report of an older frame changes nothing)."""
    row = session.get(CameraProgress, (deployment_id, camera))
    if row is None:
        row = CameraProgress(deployment_id=deployment_id, camera=camera, runs=0)
        session.add(row)
        row.media_time_s, row.next_track_id = media_time_s, next_track_id
    else:
        row.media_time_s = max(row.media_time_s, media_time_s)
        row.next_track_id = max(row.next_track_id, next_track_id)
    row.updated_at = utc_now()
