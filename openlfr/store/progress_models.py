"""How far each camera of a deployment has been analysed, so that a restarted pipeline resumes instead of
replaying: a file from the last frame whose alerts are committed (less an overlap), a live stream live; the
tracker's next id, so a track id is never given twice within (deployment, camera) and the sighting key
(deployment, camera, track, person) keeps meaning one sighting. Counts and positions only: nothing of a face.

The row is also the camera's lease: several ``openlfr worker`` processes (and ``serve``) on one database share
the cameras of live deployments, each camera held by one of them (``held_by``) until ``lease_until``. A holder
renews its lease every few seconds; one that dies stops renewing and another takes the camera over once the
lease has run out. Taking and renewing is one conditional UPDATE (row-locked on PostgreSQL, under the database
lock on SQLite), so two workers can never both hold a camera.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
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
    held_by: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)  # the worker running it
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ended: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False, server_default=sa.false())
    note: Mapped[str | None] = mapped_column(sa.Text, nullable=True)  # what the operator should know
    # A file's coverage, moved forward with ``media_time_s``: frames decoded, seconds from the file's start to the
    # end of the last frame analysed, and seconds of it skipped (undecodable) on the way.
    frames: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0, server_default="0")
    covered_s: Mapped[float] = mapped_column(sa.Float, nullable=False, default=0.0, server_default="0")
    gap_s: Mapped[float] = mapped_column(sa.Float, nullable=False, default=0.0, server_default="0")
    # The camera's health (``openlfr.runtime.camera_health``), written by the process that runs it, read by the
    # server that answers the API and /health: connecting, streaming, stalled, reconnecting, failed, finished.
    state: Mapped[str | None] = mapped_column(sa.String(20), nullable=True)
    state_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    state_reason: Mapped[str | None] = mapped_column(sa.Text, nullable=True)


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


def save_progress(
    session: Session,
    deployment_id: int,
    camera: str,
    media_time_s: float,
    next_track_id: int,
    coverage: tuple[int, float, float] = (0, 0.0, 0.0),
) -> None:
    """Move a camera's progress forward (never back: a late report of an older frame changes nothing);
    ``coverage``: a file's (frames, covered_s, gap_s) so far, over all its runs."""
    frames, covered_s, gap_s = coverage
    row = session.get(CameraProgress, (deployment_id, camera))
    if row is None:
        row = CameraProgress(deployment_id=deployment_id, camera=camera, runs=0)
        session.add(row)
        row.media_time_s, row.next_track_id = media_time_s, next_track_id
        row.frames, row.covered_s, row.gap_s = frames, covered_s, gap_s
    else:
        row.media_time_s = max(row.media_time_s, media_time_s)
        row.next_track_id = max(row.next_track_id, next_track_id)
        row.frames, row.covered_s = max(row.frames or 0, frames), max(row.covered_s or 0.0, covered_s)
        row.gap_s = max(row.gap_s or 0.0, gap_s)
    row.updated_at = utc_now()


def claim(session: Session, deployment_id: int, camera: str, holder: str, lease_s: float) -> bool:
    """Take or renew the camera's lease for ``holder`` (True), unless another holds it still or its source ended."""
    now = utc_now()
    if session.get(CameraProgress, (deployment_id, camera)) is None:
        try:
            with session.begin_nested():
                session.add(CameraProgress(deployment_id=deployment_id, camera=camera, runs=0, updated_at=now))
        except sa_exc.IntegrityError:  # another worker made the row first: the UPDATE below decides
            pass
    taken = session.execute(
        sa.update(CameraProgress)
        .where(
            CameraProgress.deployment_id == deployment_id,
            CameraProgress.camera == camera,
            CameraProgress.ended.is_(False),
            sa.or_(
                CameraProgress.held_by.is_(None),
                CameraProgress.held_by == holder,
                CameraProgress.lease_until < now,
            ),
        )
        .values(held_by=holder, lease_until=now + timedelta(seconds=lease_s))
        .execution_options(synchronize_session=False)
    )
    return int(getattr(taken, "rowcount", 0) or 0) == 1


def release(session: Session, deployment_id: int, camera: str, holder: str, ended: bool = False) -> None:
    """Give the lease back (``ended``: the camera's source ended, nobody is to take it up again)."""
    values: dict[str, object] = {"held_by": None, "lease_until": None}
    if ended:
        values["ended"] = True
    _update_if_held(session, deployment_id, camera, holder, values)


def _update_if_held(session: Session, deployment_id: int, camera: str, holder: str, values: dict[str, object]) -> None:
    """Change the camera's row only while ``holder`` has its lease: a lease taken over meanwhile is left alone."""
    session.execute(
        sa.update(CameraProgress)
        .where(
            CameraProgress.deployment_id == deployment_id,
            CameraProgress.camera == camera,
            CameraProgress.held_by == holder,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def camera_notes(session: Session, deployment_id: int, camera: str, note: str) -> str:
    """Store one camera's note; the notes of all the deployment's cameras, joined, for its page."""
    session.execute(
        sa.update(CameraProgress)
        .where(CameraProgress.deployment_id == deployment_id, CameraProgress.camera == camera)
        .values(note=note)
        .execution_options(synchronize_session=False)
    )
    notes = session.scalars(
        sa.select(CameraProgress.note)
        .where(CameraProgress.deployment_id == deployment_id, CameraProgress.note.is_not(None))
        .order_by(CameraProgress.camera)
    )
    return "; ".join(n for n in notes if n)


def expire_lease(session: Session, deployment_id: int, camera: str, holder: str) -> None:
    """End a lease now, if ``holder`` still has it (its process is known to be gone)."""
    _update_if_held(session, deployment_id, camera, holder, {"lease_until": utc_now() - timedelta(seconds=1)})


def save_camera_state(
    session: Session, deployment_id: int, camera: str, state: str, since: datetime, reason: str
) -> None:
    """Store a camera's health (its row is made when missing: a run says ``connecting`` before its first count)."""
    row = session.get(CameraProgress, (deployment_id, camera))
    if row is None:
        row = CameraProgress(deployment_id=deployment_id, camera=camera, runs=0, updated_at=utc_now())
        session.add(row)
    row.state, row.state_since, row.state_reason = state, since, reason


def camera_state_rows(session: Session, deployment_ids: list[int]) -> list[CameraProgress]:
    """The camera rows of these deployments, with their health and their lease."""
    if not deployment_ids:
        return []
    return list(session.scalars(sa.select(CameraProgress).where(CameraProgress.deployment_id.in_(deployment_ids))))
