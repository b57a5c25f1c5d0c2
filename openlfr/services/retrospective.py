"""Retrospective searches (RFR): deployments of kind ``retrospective`` whose cameras are recorded video files.

Their files must lie under a directory the admin allowed (``rfr_source_dirs``, ``OPENLFR_RFR_SOURCE_DIRS``), and
are checked and measured when the search is drafted. The scheduler runs them with the live pipeline like any
deployment, except that files are read as fast as the machine allows, every frame, none dropped
(``DeploymentRun``); the progress (seconds of footage analysed) is on the deployment's record.

An urgent search runs from its draft, before anyone authorised it; the authoriser then approves what ran. If
nobody does by ``urgent_until`` the retention sweep (``lapse_unauthorised``, called with ``close_finished``)
destroys its alerts, their reviews and its snapshot, cancels it and audits the refusal (actor ``system``). The
deletion is scrubbed from the database files like every purge of faces (``openlfr.store.db``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import av
import av.error
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from openlfr.alerts.footage import RECORDED_FROM
from openlfr.clock import utc, utc_now
from openlfr.errors import UploadRefused, UploadTooLarge
from openlfr.governance import deployments
from openlfr.governance.deployments import GovernanceError, Kind, Status
from openlfr.services import camera_secrets, footage
from openlfr.services.context import Context
from openlfr.settings import Settings
from openlfr.store.alert_models import Alert, Delivery
from openlfr.store.governance_models import AlertReview, Deployment, SnapshotImage, SnapshotPerson
from openlfr.store.progress_models import CameraProgress


def source_dirs(settings: Settings) -> list[Path]:
    """The admin's directories of recorded footage (uploads are kept in another: ``footage.footage_dir``)."""
    return [Path(part).expanduser().resolve() for part in settings.rfr_source_dirs.split(os.pathsep) if part.strip()]


PROBE_PACKETS = 120  # packets read at most to find the first frames (a keyframe may come after a few)
PROBE_FRAMES = 2  # frames that must decode before a file is accepted


@dataclass(frozen=True)
class VideoFacts:
    seconds: float  # what its header says: the video stream's duration (its container's when the stream is silent)
    frames: int | None  # the frames it promises: the stream's count, else its duration at its frame rate
    # When the footage began, as its own metadata says (the container's ``creation_time``); None where it says none.
    started_at: datetime | None = None


def recorded_from(metadata: dict[str, str]) -> datetime | None:
    """The footage's own start time from a container's metadata (``creation_time``, ISO 8601), if it holds one."""
    try:
        return utc(datetime.fromisoformat(metadata["creation_time"]))
    except (KeyError, ValueError):
        return None


def probe(path: Path, shown: str = "the file", max_pixels: int | None = None) -> VideoFacts:
    """Check a video file before any search may read it: a video stream no larger than ``max_pixels`` whose first
    frames decode, and a duration. Errors name the file as ``shown``: never its path on the server."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UploadRefused(f"{shown} has no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if max_pixels is not None and width * height > max_pixels:  # before a frame of that size is made
                raise UploadTooLarge(
                    f"{shown} is {width}x{height} ({width * height:,} pixels); at most {max_pixels:,} are accepted"
                )
            if max_pixels is not None:
                stream.codec_context.options = {"max_pixels": str(max_pixels)}
            if first_frames(container, stream) < PROBE_FRAMES:
                raise UploadRefused(f"{shown} is not a video this system can decode")
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                seconds = container.duration / 1_000_000
            else:
                raise UploadRefused(f"{shown} does not say how long it is")
            rate = float(stream.average_rate or stream.guessed_rate or 0)
            frames = int(stream.frames) or (round(seconds * rate) if rate > 0 else None)
            return VideoFacts(seconds, frames, recorded_from(dict(container.metadata)))
    except av.error.FFmpegError as exc:
        # FFmpeg's own message ends with the file's path: only its reason is told.
        raise UploadRefused(f"{shown} cannot be read as video: {exc.strerror or 'not a video'}") from None


def first_frames(container: av.container.InputContainer, stream: av.VideoStream) -> int:
    """How many frames (up to ``PROBE_FRAMES``) decode from the first ``PROBE_PACKETS`` packets."""
    frames = 0
    for count, packet in enumerate(container.demux(stream)):
        with contextlib.suppress(av.error.InvalidDataError):  # a damaged packet before the first keyframe
            frames += len(packet.decode())
        if frames >= PROBE_FRAMES or count >= PROBE_PACKETS:
            break
    return frames


def file_seconds(path: Path, shown: str = "the file", max_pixels: int | None = None) -> float:
    """The seconds of video a file holds once ``probe`` has accepted it (for an upload)."""
    return probe(path, shown, max_pixels).seconds


def check_sources(settings: Settings, cameras: list[dict[str, Any]]) -> tuple[VideoFacts, list[dict[str, Any]]]:
    """Refuse a retrospective search's sources unless each is a video file retrospective searches may read (an
    upload, or a file under an allowed directory) whose first frames decode, within ``max_upload_pixels``; the
    seconds of footage in them all and the frames they promise, and the cameras as they are stored: an upload as
    its reference (``footage:NAME``, however the draft named it), a file of an allowed directory as its path
    relative to that directory, its full path kept apart for the capture (``camera_secrets.FILE``).

    A path that does not exist, one outside the allowed directories and one that is not a file get the same
    answer, which names no path: a drafter cannot learn from it what lies where on the server."""
    uploads, chosen = footage.footage_dir(settings).resolve(), source_dirs(settings)
    seconds, frames = 0.0, 0
    promised = True  # every file says how many frames it holds
    stored = []
    for camera in cameras:
        name, source = camera.get("name"), str(camera.get("source", ""))
        path = readable(footage.file_of(settings, source) or Path(source))
        upload = path is not None and path.parent == uploads and footage.KEPT_NAME.fullmatch(path.name) is not None
        root = next((root for root in chosen if path is not None and path.is_relative_to(root)), None)
        if path is None or not (upload or root is not None):
            raise GovernanceError(
                f"camera {name!r}: not a video file retrospective searches may read (one under a directory the "
                "admin allowed for them, OPENLFR_RFR_SOURCE_DIRS, or footage uploaded with PUT /api/footage)"
            )
        try:
            facts = probe(path, f"camera {name!r}'s file", settings.max_upload_pixels)
        except UploadRefused as exc:
            raise GovernanceError(str(exc)) from None
        seconds += facts.seconds
        frames += facts.frames or 0
        promised = promised and facts.frames is not None
        began = {RECORDED_FROM: facts.started_at.isoformat()} if facts.started_at is not None else {}
        if upload or root is None:  # (no root: an upload)
            stored.append({**camera, "source": footage.reference(path), **began})
        else:
            stored.append({**camera, "source": str(path.relative_to(root)), camera_secrets.FILE: str(path), **began})
    return VideoFacts(seconds, frames if promised else None), stored


def readable(path: Path) -> Path | None:
    """``path`` resolved, if it is an absolute path to a file (None for whatever else: nothing tells them apart)."""
    try:
        resolved = path.resolve(strict=True) if path.is_absolute() else None
    except (OSError, RuntimeError):
        return None
    return resolved if resolved is not None and resolved.is_file() else None


def destroy_alerts(db: Session, deployment_id: int) -> int:
    """Delete a deployment's alerts with their probe images, reviews and outbox rows; how many there were."""
    ids = list(db.scalars(select(Alert.id).where(Alert.deployment_id == deployment_id)))
    db.execute(delete(Delivery).where(Delivery.deployment_id == deployment_id))
    if ids:
        db.execute(delete(Alert).where(Alert.id.in_(ids)))
    db.execute(delete(AlertReview).where(AlertReview.deployment_id == deployment_id))
    return len(ids)


def lapse_unauthorised(db: Session, ctx: Context, now: datetime | None = None) -> list[int]:
    """Urgent searches not authorised by their deadline: alerts and snapshot destroyed, cancelled, audited."""
    moment = now or utc_now()
    within = ctx.settings.rfr_authorise_within_hours
    due = db.scalars(
        select(Deployment).where(
            Deployment.urgent_until.is_not(None),
            Deployment.urgent_until <= moment,
            Deployment.authorised_by.is_(None),
            Deployment.authorisation_lapsed_at.is_(None),
        )
    ).all()
    for row in due:
        changes = deployments.lapse(row, moment, within)
        if not changes:
            continue
        alerts = destroy_alerts(db, row.id)
        db.execute(delete(SnapshotImage).where(SnapshotImage.deployment_id == row.id))
        db.execute(delete(SnapshotPerson).where(SnapshotPerson.deployment_id == row.id))
        for name, value in changes.items():
            setattr(row, name, value)
        row.snapshot_destroyed_at = moment
        ctx.audit(
            db,
            "deployment.authorisation_lapsed",
            f"deployment:{row.id}",
            {
                "urgent_until": row.urgent_until.isoformat() if row.urgent_until else None,
                "alerts_destroyed": alerts,
                "snapshot_destroyed": True,
                "ran_before_authorisation": row.processing_started_at is not None,
            },
        )
    return [row.id for row in due]


def covered(db: Session, deployment_id: int) -> tuple[float, int, float]:
    """What the cameras' frames covered so far: (seconds of footage, frames decoded, seconds skipped in between)."""
    seconds, frames, gaps = db.execute(
        select(
            func.coalesce(func.sum(CameraProgress.covered_s), 0.0),
            func.coalesce(func.sum(CameraProgress.frames), 0),
            func.coalesce(func.sum(CameraProgress.gap_s), 0.0),
        ).where(CameraProgress.deployment_id == deployment_id)
    ).one()
    return max(0.0, float(seconds) - float(gaps)), int(frames), float(gaps)


def coverage(row: Deployment, done_s: float, frames: int) -> float:
    """The share of a search's footage its frames covered (0 to 1): the seconds reached less the gaps, against the
    seconds its files claim, and the frames decoded against the frames they promise; the lesser of the two."""
    shares = [1.0]
    if row.media_seconds:
        shares.append(done_s / row.media_seconds)
    if row.media_frames:
        shares.append(frames / row.media_frames)
    return round(max(0.0, min(shares)), 4)


def record_progress(db: Session, ctx: Context, deployment_id: int) -> None:
    """The seconds of footage analysed so far (from the frames decoded: the cameras' stored progress); the first
    time, when the processing started, audited (for an urgent search not yet authorised: that it runs before its
    authorisation)."""
    done, _, _ = covered(db, deployment_id)
    db.execute(update(Deployment).where(Deployment.id == deployment_id).values(media_done_seconds=done))
    started = db.execute(
        update(Deployment)
        .where(Deployment.id == deployment_id, Deployment.processing_started_at.is_(None))
        .values(processing_started_at=utc_now())
        .execution_options(synchronize_session=False)
    )
    if int(getattr(started, "rowcount", 0) or 0) != 1:
        return
    row = db.get(Deployment, deployment_id)
    unauthorised = row is not None and row.authorised_by is None
    details: dict[str, Any] = {"media_seconds": None if row is None else row.media_seconds}
    if unauthorised and row is not None and row.urgent_until is not None:
        details |= {"before_authorisation": True, "authorise_by": utc(row.urgent_until).isoformat()}
    ctx.audit(db, "deployment.processing_started", f"deployment:{deployment_id}", details)


def finish_if_done(db: Session, ctx: Context, deployment_id: int, analysis_s: float) -> bool:
    """Once every camera's file has been read to its end: the processing's end, with the share of the footage its
    frames covered (``coverage``: a truncated or damaged file is read to where it breaks off, and says so), and an
    authorised search ends (its snapshot then goes under the retention rule). Whether it is done."""
    row = db.get(Deployment, deployment_id)
    if row is None or Kind(row.kind) is not Kind.RETROSPECTIVE or row.processing_finished_at is not None:
        return row is not None and row.processing_finished_at is not None
    ended = db.scalar(
        select(func.count())
        .select_from(CameraProgress)
        .where(CameraProgress.deployment_id == deployment_id, CameraProgress.ended.is_(True))
    )
    if int(ended or 0) < len(row.cameras):
        return False
    moment = utc_now()
    done, frames, gaps = covered(db, deployment_id)
    row.processing_finished_at = moment
    row.coverage = coverage(row, done, frames)
    # Complete: to the file's last frame (whose end is the claimed length, give or take the rounding).
    row.media_done_seconds = row.media_seconds if row.coverage >= 1.0 and row.media_seconds else done
    began = row.processing_started_at
    ctx.audit(
        db,
        "deployment.processed",
        f"deployment:{row.id}",
        {
            "media_seconds": row.media_seconds,  # what the files claim
            "media_done_seconds": round(row.media_done_seconds, 3),  # what their frames covered
            "frames_decoded": frames,
            "frames_expected": row.media_frames,
            "gap_seconds": round(gaps, 3),
            "coverage": row.coverage,
            "wall_seconds": None if began is None else round((moment - utc(began)).total_seconds(), 2),
            "analysis_seconds": round(analysis_s, 2),  # the first frame read to the last (this camera's run)
            "authorised": row.authorised_by is not None,
        },
    )
    end_processed(row, moment)
    return True


def end_processed(row: Deployment, now: datetime) -> None:
    """An authorised retrospective search whose files are all analysed has nothing more to do: it ends."""
    if Status(row.status) is Status.AUTHORISED and row.processing_finished_at is not None:
        row.status, row.ended_by, row.ended_at = Status.ENDED.value, "system", min(utc(now), utc(row.ends_at))
