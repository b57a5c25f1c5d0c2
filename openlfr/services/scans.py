"""`openlfr scan` in the governance record: every scan is a time-boxed, audited deployment of the local user.

A scan from the command line has no second person to authorise it, so it is recorded for what it is: a
deployment drafted and started by the local user (``cli:<login>``), with its sources, watchlist, threshold and
flags, a window from now to at most ``scan_max_hours`` ahead (matching stops at its end whatever happens), an
audit entry when it starts and one when it stops, its alerts bound to it for human review in the console,
and its counts (frames, faces seen, tracks, alerts) on the record. The server never runs it: ``may_match``
refuses a deployment authorised by its own author, so a local scan is never mistaken for an authorised one.

``openlfr scan --deployment ID`` instead runs inside a deployment authorised in the server (another person's
authorisation, its watchlist snapshot and threshold), guarded by ``may_match``. Both start their pipeline with
``openlfr.services.live.build_pipeline``, as the server does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from openlfr.alerts.sinks import AlertSink
from openlfr.clock import utc_now
from openlfr.errors import OpenLFRError
from openlfr.governance.deployments import Status
from openlfr.governance.guard import MatchGuard
from openlfr.services import camera_secrets, deployments
from openlfr.services.context import Context
from openlfr.services.live import (
    CameraDefaults,
    LivePipeline,
    build_pipeline,
    camera_of,
    listed_watchlist,
    snapshot_watchlist,
)
from openlfr.services.metrics import PIPELINES
from openlfr.store.db import Store
from openlfr.store.governance_models import Deployment
from openlfr.stream.runner import RunSummary
from openlfr.stream.source import CameraConfig
from openlfr.stream.stats import CameraCounters
from openlfr.stream.watchlists import LiveWatchlist
from openlfr.vision.engine import model_id_for


@dataclass
class ScanDeployment:
    store: Store
    ctx: Context
    deployment_id: int
    ends_at: datetime

    @classmethod
    def start(
        cls,
        store: Store,
        ctx: Context,
        cameras: Sequence[CameraConfig],
        watchlist: str,
        threshold: float,
        target_fpir: float | None,
        threshold_note: str,
        flags: dict[str, Any],
        watchlist_size: int,
        sinks: Sequence[str] = (),
    ) -> ScanDeployment:
        actor = ctx.actor
        starts = utc_now()
        ends = starts + timedelta(hours=ctx.settings.scan_max_hours)
        with store.session() as db:
            row = Deployment(
                name=f"scan by {actor}",
                place="local scan (" + ", ".join(c.name for c in cameras) + ")",
                purpose="openlfr scan from the command line",
                starts_at=starts,
                ends_at=ends,
                cameras=camera_secrets.sealed(ctx.settings, [{"name": c.name, "source": c.url} for c in cameras]),
                watchlist_name=watchlist,
                sinks=list(sinks),
                threshold=None if target_fpir is not None else threshold,
                target_fpir=target_fpir,
                status=Status.AUTHORISED.value,
                created_by=actor,
                created_at=starts,
                authorised_by=actor,
                authorised_at=starts,
                justification="local command-line scan (self-authorised, recorded): " + describe(flags),
                effective_threshold=threshold,
                threshold_note=threshold_note,
                watchlist_size=watchlist_size,
                frames=0,
                faces_seen=0,
                tracks=0,
                alerts_raised=0,
            )
            db.add(row)
            db.flush()
            ctx.audit(
                db,
                "scan.start",
                f"deployment:{row.id}",
                {
                    "cameras": camera_secrets.shown(row.cameras),
                    "watchlist": watchlist,
                    "threshold": threshold,
                    "flags": flags,
                },
            )
            deployment_id = row.id
        return cls(store, ctx, deployment_id, ends)

    def finish(self, counters: CameraCounters, errors: dict[str, str], interrupted: bool) -> None:
        """Counts onto the record, the deployment ended, and an audit entry saying how it went."""
        with self.store.session() as db:
            deployments.add_counts(
                db, self.deployment_id, counters.decoded, counters.faces_seen, counters.tracks, counters.alerts
            )
            row = db.get(Deployment, self.deployment_id)
            if row is not None and row.status == Status.AUTHORISED.value:
                row.status = Status.ENDED.value
                row.ended_by = self.ctx.actor
                row.ended_at = min(utc_now(), self.ends_at)
                if errors:
                    row.pipeline_note = "; ".join(errors.values())[:2000]
            self.ctx.audit(
                db,
                "scan.end",
                f"deployment:{self.deployment_id}",
                {
                    "frames": counters.decoded,
                    "faces_seen": counters.faces_seen,
                    "tracks": counters.tracks,
                    "alerts": counters.alerts,
                    "camera_errors": len(errors),
                    "interrupted": interrupted,
                },
            )


def describe(flags: dict[str, Any]) -> str:
    return " ".join(f"--{k.replace('_', '-')}={v}" for k, v in flags.items() if v not in (None, False, [], ""))


# ----- the use case of `openlfr scan` -----


@dataclass(frozen=True)
class ScanRequest:
    """What the command line asked for (its flags, as given, go on the record)."""

    cameras: list[CameraConfig]  # from the command line; empty with a deployment means "its own cameras"
    defaults: CameraDefaults  # --fps-cap, --roi, --min-face, also for a deployment's own cameras
    watchlist: str | None = None
    threshold: float | None = None
    target_fpir: float | None = None
    deployment_id: int | None = None
    realtime: bool = False
    flags: dict[str, Any] | None = None
    sinks: list[str] = field(default_factory=list)  # where its alerts go (configured names, webhook:URL, mqtt:...)


@dataclass
class Scan:
    """A scan ready to run: its pipeline, and the record it keeps (a scan's own, or the deployment's counts)."""

    store: Store
    pipeline: LivePipeline
    cameras: list[CameraConfig]
    record: ScanDeployment | None

    def __post_init__(self) -> None:
        if self.pipeline.deployment_id is not None:
            PIPELINES.deployment_state(self.pipeline.deployment_id, "running")

    @property
    def watchlist(self) -> LiveWatchlist:
        return self.pipeline.watchlist

    def finish(self, summary: RunSummary, interrupted: bool) -> None:
        """The counts onto the record (and, for a scan's own record, its end and audit entry)."""
        if self.pipeline.deployment_id is not None:
            PIPELINES.deployment_state(self.pipeline.deployment_id, "stopped" if interrupted else "finished")
        if self.record is not None:
            self.record.finish(summary.counters, summary.errors, interrupted)
            return
        assert self.pipeline.deployment_id is not None
        c = summary.counters
        with self.store.session() as db:
            deployments.add_counts(db, self.pipeline.deployment_id, c.decoded, c.faces_seen, c.tracks, c.alerts)


def prepare_scan(
    store: Store,
    ctx: Context,
    request: ScanRequest,
    *,
    sinks: Sequence[AlertSink],
    on_error: Callable[[str, str], None] | None = None,
    on_notice: Callable[[str, str], None] | None = None,
) -> Scan:
    """The pipeline of a scan: inside an authorised deployment (its snapshot, threshold, window and guard), or
    over a stored watchlist as a recorded deployment of the local user."""
    settings = ctx.settings
    if request.deployment_id is not None:
        deployment_id = request.deployment_id

        def load_facts() -> Deployment | None:
            with store.session() as db:
                return db.get(Deployment, deployment_id)

        guard = MatchGuard(load_facts)
        permission = guard.permission()
        if not permission.allowed:
            raise OpenLFRError(f"deployment {deployment_id} may not match now: {permission.reason}")
        watchlist = snapshot_watchlist(store, deployment_id, settings)
        model_id = model_id_for(settings)
        if watchlist.model_id != model_id:
            raise OpenLFRError(
                f"deployment {deployment_id} holds {watchlist.model_id} embeddings; this machine makes {model_id}"
            )
        cameras = request.cameras or [
            camera_of(camera_secrets.opened(settings, c), request.defaults) for c in watchlist.cameras
        ]
        facts = load_facts()
        assert facts is not None
        pipeline = build_pipeline(
            store,
            settings,
            watchlist,
            cameras,
            deployment_id=deployment_id,
            sinks=sinks,
            may_match=guard.__bool__,
            match_until=facts.ends_at,
            realtime=request.realtime,
            on_error=on_error,
            on_notice=on_notice,
        )
        return Scan(store, pipeline, cameras, None)
    if request.watchlist is None:
        raise OpenLFRError("say which watchlist to search: --watchlist NAME (or --deployment ID)")
    target = request.target_fpir
    if request.threshold is None and target is None:
        target = settings.scan_target_fpir
    watchlist = listed_watchlist(store, request.watchlist, settings, threshold=request.threshold, target_fpir=target)
    record = ScanDeployment.start(
        store,
        ctx,
        request.cameras,
        request.watchlist,
        watchlist.threshold,
        target,
        watchlist.note,
        request.flags or {},
        watchlist.size,
        request.sinks,
    )
    pipeline = build_pipeline(
        store,
        settings,
        watchlist,
        request.cameras,
        deployment_id=record.deployment_id,
        sinks=sinks,
        match_until=record.ends_at,
        realtime=request.realtime,
        on_error=on_error,
        on_notice=on_notice,
    )
    return Scan(store, pipeline, request.cameras, record)
