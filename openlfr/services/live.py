"""One way to start a live pipeline: settings + a watchlist snapshot + sources -> a running ``PipelineRunner``.

``openlfr scan`` (a watchlist or ``--deployment``), ``openlfr serve`` and ``openlfr worker`` (the deployment
scheduler) all call :func:`build_pipeline`, so every stream setting (``settings.stream``: evidence k/n, the
frame queue, detection, tracking, sampling), the calibration file and the cameras' ROI, fps cap and minimum face
reach the pipeline the same way on every path. What differs between them is said here, as parameters: whether
files are played at their own pace, whether a live camera is retried for the whole window, the window's end.

The watchlist a pipeline searches is a :class:`LiveWatchlist`: a deployment's frozen snapshot (what the
authoriser approved) or, for a bare scan, the active entries of a stored watchlist; either way a ``Gallery``
whose person ids are the people's reference ids, with their display names and the threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import select

from openlfr.alerts.database import AlertDatabase
from openlfr.alerts.dispatch import AlertDispatcher
from openlfr.alerts.record import AlertFound
from openlfr.alerts.sinks import AlertSink
from openlfr.clock import utc_now
from openlfr.errors import NotFound, OpenLFRError
from openlfr.services.camera_secrets import SHOWN
from openlfr.services.metrics import PIPELINES, AlertMetricsSink
from openlfr.services.second_opinion import frozen_second_opinion, with_second_opinion
from openlfr.settings import Settings
from openlfr.store.db import Store
from openlfr.store.governance_models import Deployment, SnapshotImage, SnapshotPerson
from openlfr.store.watchlists import active_references, get_watchlist
from openlfr.stream.evidence import EvidenceRule
from openlfr.stream.runner import CameraResume, CameraState, PipelineRunner, RunnerOptions
from openlfr.stream.source import CameraConfig, CaptureOptions
from openlfr.stream.watchlists import LiveWatchlist
from openlfr.stream.worker import FrameView
from openlfr.vision.engine import model_id_for, second_model_id
from openlfr.vision.types import Box
from openlfr.watchlist.calibration import CalibrationError, choose_threshold, load_calibration
from openlfr.watchlist.search import Gallery, gallery_options


def build_gallery(
    settings: Settings,
    embeddings: np.ndarray,
    person_refs: list[str],
    image_ids: list[int],
    model_id: str,
    expires_at: Sequence[datetime],
) -> Gallery:
    """Stored reference embeddings as a searchable gallery, with the search options of the settings; each
    reference stops being found at its person's ``expires_at``, even in a pipeline already running."""
    return Gallery(embeddings, person_refs, image_ids, model_id, expires_at=expires_at, **gallery_options(settings))


def resolve_threshold(
    settings: Settings, model_id: str, size: int, threshold: float | None, target_fpir: float | None
) -> tuple[float, str]:
    """The threshold a pipeline runs at, and a sentence saying how it was chosen: from the calibration table
    (``OPENLFR_CALIBRATION_FILE``, else the user's own, else the shipped one) for a target false-alert rate and
    the watchlist's size, or as given."""
    try:
        table = load_calibration(model_id, explicit=settings.calibration_file, data_dir=settings.data_dir)
        choice = choose_threshold(table, size, target_fpir=target_fpir, threshold=threshold)
    except CalibrationError:
        if threshold is None:
            raise
        return float(threshold), f"threshold {threshold:.4f} given (no calibration table for {model_id})"
    return choice.threshold, choice.describe()


def listed_watchlist(
    store: Store,
    name: str,
    settings: Settings,
    *,
    threshold: float | None,
    target_fpir: float | None,
    now: datetime | None = None,
) -> LiveWatchlist:
    """The active references of a stored watchlist, for the embedding model these settings make."""
    model_id = model_id_for(settings)
    second_id = second_model_id(settings)
    moment = now or utc_now()
    with store.session() as session:
        watchlist = get_watchlist(session, name)
        refs = active_references(session, watchlist.id, model_id, moment)
        seconds = None if second_id is None else active_references(session, watchlist.id, second_id, moment)
    if refs.size == 0:
        raise OpenLFRError(
            f"watchlist {name!r} has nobody to search for with the {model_id} model "
            "(empty, every entry expired, or enrolled with another model)"
        )
    person_refs = [refs.people[p].reference_id for p in refs.person_ids]
    expiry = [refs.people[p].expires_at for p in refs.person_ids]
    gallery = build_gallery(settings, refs.embeddings, person_refs, list(refs.image_ids), model_id, expiry)
    chosen, note = resolve_threshold(settings, model_id, gallery.size, threshold, target_fpir)
    names = {p.reference_id: p.display_name for p in refs.people.values()}
    listed = LiveWatchlist(name, gallery, names, chosen, note)
    if seconds is None or second_id is None:
        return listed
    second_refs = [seconds.people[p].reference_id for p in seconds.person_ids]
    return with_second_opinion(
        settings, listed, seconds.embeddings, second_refs, second_id, threshold=threshold, target_fpir=target_fpir
    )


def snapshot_watchlist(store: Store, deployment_id: int, settings: Settings) -> LiveWatchlist:
    """A deployment's frozen watchlist (person ids = reference ids, references = snapshot images)."""
    with store.session() as db:
        row = db.get(Deployment, deployment_id)
        if row is None or row.snapshot_taken_at is None or row.snapshot_destroyed_at is not None:
            raise NotFound(f"deployment {deployment_id} has no watchlist snapshot")
        found = db.execute(
            select(
                SnapshotImage.id,
                SnapshotImage.embedding,
                SnapshotImage.model_id,
                SnapshotPerson.person_ref,
                SnapshotPerson.expires_at,
            )
            .join(SnapshotPerson, SnapshotPerson.id == SnapshotImage.person_id)
            .where(SnapshotImage.deployment_id == deployment_id)
            .order_by(SnapshotImage.id)
        ).all()
        names = {
            p.person_ref: p.display_name
            for p in db.scalars(select(SnapshotPerson).where(SnapshotPerson.deployment_id == deployment_id))
        }
        threshold = row.effective_threshold if row.effective_threshold is not None else row.threshold
        if threshold is None or not found:
            raise NotFound(f"deployment {deployment_id} has no threshold or no references")
        # The first model's rows come first; rows of another model are the second opinion's (frozen_snapshot).
        model_id = found[0][2]
        first = [r for r in found if r[2] == model_id]
        second = [r for r in found if r[2] != model_id]
        gallery = build_gallery(
            settings,
            np.stack([np.asarray(r[1], np.float32) for r in first]),
            [r[3] for r in first],
            [int(r[0]) for r in first],
            model_id,
            [r[4] for r in first],
        )
        note = f"threshold {float(threshold):.4f} of deployment {deployment_id}"
        frozen = LiveWatchlist(row.watchlist_name, gallery, names, float(threshold), note, list(row.cameras))
        if not second:
            return frozen
        vectors = np.stack([np.asarray(r[1], np.float32) for r in second])
        return frozen_second_opinion(settings, frozen, vectors, [r[3] for r in second], second[0][2])


def roi_box(value: object) -> Box | None:
    """A region of interest as given: ``"LEFT,TOP,RIGHT,BOTTOM"`` or four numbers; None or empty for none."""
    if value is None or value == "" or value == []:
        return None
    try:
        parts = value.split(",") if isinstance(value, str) else list(value)  # type: ignore[call-overload]
        left, top, right, bottom = (int(v) for v in parts)
    except (TypeError, ValueError):
        raise OpenLFRError(f"a region of interest is LEFT,TOP,RIGHT,BOTTOM in pixels, got {value!r}") from None
    if right <= left or bottom <= top or min(left, top) < 0:
        raise OpenLFRError(f"region of interest {value!r} is empty or negative")
    return Box(left, top, right, bottom)


@dataclass(frozen=True)
class CameraDefaults:
    """What applies to a camera that does not say otherwise (the command line's --fps-cap, --roi, --min-face)."""

    fps_cap: float = 0.0
    roi: Box | None = None
    min_face_px: int = 0  # 0: the stream settings' min_face_px


def camera_of(record: dict[str, Any], defaults: CameraDefaults, url_key: str = "source") -> CameraConfig:
    """One camera from a record (a deployment's ``{"name", "source"}``, a cameras file's ``{"name", "url"}``),
    whose own ``fps_cap``, ``roi`` and ``min_face_px`` win over the defaults; a record opened by
    ``camera_secrets.opened`` says in ``shown`` what its messages show instead of the file it opens."""
    return CameraConfig(
        name=str(record["name"]),
        url=str(record[url_key]),
        shown_as=str(record.get(SHOWN) or ""),
        fps_cap=float(record.get("fps_cap", defaults.fps_cap)),
        roi=roi_box(record["roi"]) if record.get("roi") else defaults.roi,
        min_face_px=int(record.get("min_face_px", defaults.min_face_px) or 0),
    )


@dataclass
class LivePipeline:
    """A pipeline ready to run: the runner (one process per camera) and the dispatcher its alerts go through."""

    runner: PipelineRunner
    dispatcher: AlertDispatcher
    watchlist: LiveWatchlist
    deployment_id: int | None


def build_pipeline(
    store: Store,
    settings: Settings,
    watchlist: LiveWatchlist,
    cameras: Sequence[CameraConfig],
    *,
    deployment_id: int | None,
    sinks: Sequence[AlertSink] = (),
    may_match: Callable[[], bool] = lambda: True,
    match_until: datetime | None = None,
    realtime: bool = False,
    retry_for_window: bool = False,
    on_error: Callable[[str, str], None] | None = None,
    on_notice: Callable[[str, str], None] | None = None,
    on_stats: Callable[[dict[str, CameraState]], None] | None = None,
    on_view: Callable[[FrameView], None] | None = None,
    view_interval_s: float = 0.0,
    dispatcher: AlertDispatcher | None = None,
    resume: Mapping[str, CameraResume] | None = None,
    count_alerts: bool = True,
) -> LivePipeline:
    """The live pipeline of ``cameras`` searching ``watchlist``: alerts committed with ``deployment_id`` before
    ``sinks`` hear of them; matching only while ``may_match()`` and before ``match_until``.

    ``realtime`` plays files at their own pace, as a camera would; ``retry_for_window`` retries a live camera
    for as long as the pipeline runs (a deployment's window) instead of giving up after
    ``settings.stream.reconnect_attempts`` failed connections. A ``dispatcher`` given (one that holds alerts
    while the database does not answer, kept across restarts of the pipeline) replaces the plain one; ``resume``
    continues cameras' earlier runs (track ids, cooldowns; a file's start is its ``CameraConfig.start_at_s``).
    ``count_alerts`` False: this process counts committed alerts from its event board (``openlfr serve``), so the
    dispatcher must not count them too.
    """
    stream = settings.stream
    dispatcher = dispatcher or AlertDispatcher(
        AlertDatabase(store), sinks, watchlist_name=watchlist.name, names=watchlist.names, deployment_id=deployment_id
    )
    on_alert: Callable[[AlertFound], None] = dispatcher.on_alert
    # This process's metrics hear the counts the camera processes report here; without an event board (worker, scan)
    # the dispatcher's commit is the one place this process learns of a committed alert, and counts it there.
    PIPELINES.watch_store(store)
    counted_by_dispatcher = any(isinstance(sink, AlertMetricsSink) for sink in dispatcher.sinks)  # kept over restarts
    if count_alerts and not counted_by_dispatcher:
        dispatcher.sinks.append(AlertMetricsSink(PIPELINES, deployment_id))

    def counted(states: dict[str, CameraState]) -> None:
        PIPELINES.observe(deployment_id, states)
        if on_stats is not None:
            on_stats(states)

    runner = PipelineRunner(
        cameras,
        settings,
        watchlist.gallery,
        EvidenceRule(threshold=watchlist.threshold, k=stream.evidence_k, n=stream.evidence_n, fuse=stream.track_fusion),
        on_alert=on_alert,
        on_error=on_error,
        on_notice=on_notice,
        on_stats=counted,
        on_view=on_view,
        may_match=may_match,
        options=RunnerOptions(
            realtime=realtime,
            slots=stream.queue_frames,
            view_interval_s=view_interval_s,
            match_until=None if match_until is None else match_until.timestamp(),
            capture=CaptureOptions(
                reconnect_attempts=0 if retry_for_window else stream.reconnect_attempts,
                allowed_hosts=settings.camera_allowed_hosts,
            ),
        ),
        resume=resume,
        second=watchlist.second,
    )
    return LivePipeline(runner, dispatcher, watchlist, deployment_id)
