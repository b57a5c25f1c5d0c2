"""The system page's one read (``/system``, admins): the stored state (``openlfr.services.system_state``) and what
only the running server knows: the pipelines it runs and its retention loop's last round.

Cameras come from the database (every process's, as ``/health`` reads them), each with its typed state and its
source redacted (``camera_secrets.shown``); the pipelines are this process's runs, typed by ``RunState``, their
failures already redacted by the supervisor.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from openlfr import __version__
from openlfr.runtime.background import RetentionLoop, RetentionRound
from openlfr.runtime.camera_health import CameraHealth, camera_states
from openlfr.runtime.deployment_run import RunStatus
from openlfr.runtime.scheduler import Scheduler
from openlfr.services import camera_secrets, system_state
from openlfr.services.deployments import live_deployments
from openlfr.services.system_state import AuditChainState, AuditNote, DatabaseInfo, DataDirectory, SinkState
from openlfr.settings import Settings


@dataclass(frozen=True)
class CameraView:
    name: str
    source: str  # redacted: no password, no query value, no server path of a file
    health: CameraHealth | None  # None: no process has said anything of it yet


@dataclass(frozen=True)
class LiveDeploymentView:
    id: int
    name: str
    cameras: list[CameraView]


@dataclass(frozen=True)
class RetentionView:
    interval_s: float
    runs_here: bool  # whether this process runs the retention loop (``openlfr serve`` does, unless told not to)
    last_round: RetentionRound | None  # this process's last round (none yet just after start)
    last_entry: AuditNote | None  # retention's newest audit entry, from any process


@dataclass(frozen=True)
class SystemOverview:
    version: str
    database: DatabaseInfo
    data_dir: DataDirectory
    deployments: list[LiveDeploymentView]
    pipelines: list[RunStatus] | None  # None: this process runs no pipelines (``openlfr worker`` does)
    sinks: list[SinkState]
    retention: RetentionView
    audit: AuditChainState


def _live(db: Session) -> list[LiveDeploymentView]:
    views = []
    for row in live_deployments(db):
        states = camera_states(db, row, live=True)
        cameras = [
            CameraView(str(camera.get("name", "")), str(camera.get("source", "")), states.get(str(camera.get("name"))))
            for camera in camera_secrets.shown(list(row.cameras or []))
        ]
        views.append(LiveDeploymentView(row.id, row.name, cameras))
    return views


def system_overview(
    db: Session, settings: Settings, engine: Engine, scheduler: Scheduler | None, retention: RetentionLoop | None
) -> SystemOverview:
    return SystemOverview(
        version=__version__,
        database=system_state.database_info(engine),
        data_dir=system_state.data_directory(settings.data_dir),
        deployments=_live(db),
        pipelines=None if scheduler is None else scheduler.status(),
        sinks=system_state.sink_states(db, settings.sinks),
        retention=RetentionView(
            settings.retention_interval_seconds,
            retention is not None,
            None if retention is None else retention.last,
            system_state.last_retention_entry(db),
        ),
        audit=system_state.audit_chain_state(db),
    )
