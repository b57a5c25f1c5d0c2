"""Each camera of a running deployment has a state, so that no camera fails silently.

``connecting`` until its first frame; ``streaming`` while frames arrive; ``stalled`` when none came for
``OPENLFR_STREAM_STALL_SECONDS`` (default 5); ``reconnecting`` while its source is reopened (or its pipeline
restarted); ``failed`` when it was given up (a source that cannot be read, too many restarts); ``finished`` when
a file was read to its end. A :class:`CameraWatch` (one per camera run) derives the state from what the pipeline
reports and from a look at each camera's last frame on the run's bookkeeping thread; each change is a
:class:`CameraStateChanged`, which the run's books store in the camera's ``camera_progress`` row (so the server
answering the API sees the cameras of every ``openlfr worker``), audit (actor ``system``) and hand to the event
board. Reasons are shown to operators and sent to sinks: any URL in them is redacted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from openlfr.clock import utc, utc_now
from openlfr.services.deployments import live_deployments
from openlfr.store.governance_models import Deployment
from openlfr.store.progress_models import CameraProgress, camera_state_rows
from openlfr.stream.run_state import CameraState
from openlfr.urls import redact_text


class CameraStatus(StrEnum):
    CONNECTING = "connecting"
    STREAMING = "streaming"
    STALLED = "stalled"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    FINISHED = "finished"

    @property
    def up(self) -> bool:
        """Whether somebody is being looked at (a finished file is done, not down)."""
        return self in (CameraStatus.STREAMING, CameraStatus.FINISHED)


@dataclass(frozen=True)
class CameraHealth:
    """A camera's state, since when, and why (shown to operators: no URL in it)."""

    state: CameraStatus
    since: datetime
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state.value, "since": self.since.isoformat(), "reason": self.reason}


@dataclass(frozen=True)
class CameraStateChanged:
    """The typed event of a camera whose state changed (the event board's and the sinks' ``camera`` events)."""

    deployment_id: int
    camera: str
    health: CameraHealth
    previous: CameraStatus | None

    @property
    def key(self) -> str:
        """Stable for one change (a sink's ``Idempotency-Key``)."""
        return f"camera:{self.deployment_id}:{self.camera}:{self.health.state.value}:{self.health.since.isoformat()}"

    def payload(self) -> dict[str, Any]:
        return {
            "event": "camera",
            "deployment_id": self.deployment_id,
            "camera": self.camera,
            "previous": self.previous.value if self.previous is not None else None,
            **self.health.as_dict(),
        }


def down_text(names_down: list[str], total: int) -> str:
    """The banner: ``1 of 3 cameras down: nobody is being looked at on 'north'``."""
    shown = ", ".join(repr(name) for name in names_down)
    noun = "camera" if total == 1 else "cameras"
    return f"{len(names_down)} of {total} {noun} down: nobody is being looked at on {shown}"


class CameraWatch:
    """The states of one run's cameras. Thread-safe: the pipeline's callbacks and the books thread call it."""

    def __init__(self, deployment_id: int, stall_s: float, on_change: Callable[[CameraStateChanged], None]) -> None:
        self.deployment_id, self.stall_s, self.on_change = deployment_id, stall_s, on_change
        self._lock = threading.Lock()
        self._health: dict[str, CameraHealth] = {}
        self._pipeline: Mapping[str, CameraState] = {}  # the running pipeline's live per-camera state

    def states(self) -> dict[str, CameraHealth]:
        with self._lock:
            return dict(self._health)

    def set(self, camera: str, state: CameraStatus, reason: str = "", since: datetime | None = None) -> None:
        """Move a camera to ``state`` (nothing happens when it is in it already)."""
        with self._lock:
            before = self._health.get(camera)
            if before is not None and before.state is state:
                return
            if before is not None and before.state is CameraStatus.FINISHED and state is CameraStatus.STALLED:
                return  # a file read to its end sends no more frames: that is no stall
            health = CameraHealth(state, since or utc_now(), redact_text(reason)[:300])
            self._health[camera] = health
        self.on_change(CameraStateChanged(self.deployment_id, camera, health, before.state if before else None))

    def pipeline_starting(self, cameras: list[str], restart: bool) -> None:
        with self._lock:
            self._pipeline = {}
        for name in cameras:
            if restart:
                self.set(name, CameraStatus.RECONNECTING, "the pipeline restarts")
            else:
                self.set(name, CameraStatus.CONNECTING, "starting")

    def pipeline_reports(self, states: Mapping[str, CameraState]) -> None:
        with self._lock:
            self._pipeline = states
        self.look()

    def notice(self, camera: str, message: str) -> None:
        """What the source said: a reconnection is under way."""
        if camera and "reconnecting" in message:
            self.set(camera, CameraStatus.RECONNECTING, message)

    def all(self, state: CameraStatus, reason: str) -> None:
        for name in self.states():
            self.set(name, state, reason)

    def look(self) -> None:
        """Streaming while frames arrive; stalled once none came for ``stall_s`` (called every half second)."""
        with self._lock:
            pipeline = dict(self._pipeline)
        now = time.monotonic()
        for name, state in pipeline.items():
            last = state.last_frame_at
            current = self.states().get(name)
            if current is not None and current.state in (CameraStatus.FAILED, CameraStatus.FINISHED):
                continue
            if state.finished:
                continue  # the run says how it ended (finished, failed, reconnecting)
            if last is not None and now - last < self.stall_s:
                self.set(name, CameraStatus.STREAMING, "frames arrive")
            elif current is not None and current.state is CameraStatus.STREAMING:
                seen = utc_now() - timedelta(seconds=now - last) if last is not None else utc_now()
                self.set(name, CameraStatus.STALLED, f"no frame for {self.stall_s:g} s", since=seen)


def _stored(row: CameraProgress | None, now: datetime) -> CameraHealth | None:
    """A camera's stored health; one whose holder stopped renewing its lease is stalled, whatever it last said."""
    if row is None or row.state is None or row.state_since is None:
        return None
    health = CameraHealth(CameraStatus(row.state), utc(row.state_since), row.state_reason or "")
    lease = utc(row.lease_until) if row.lease_until is not None else None
    if not health.state.up or row.ended or lease is None or lease >= now or health.state is CameraStatus.FINISHED:
        return health
    return CameraHealth(CameraStatus.STALLED, lease, "the process running this camera stopped renewing its lease")


def camera_states(db: Session, deployment: Deployment, live: bool) -> dict[str, CameraHealth]:
    """Each camera's health (``GET /api/deployments/{id}``); a live deployment's camera no process has taken up
    yet is ``connecting``. A deployment that is not live has the states its cameras last had."""
    now = utc_now()
    rows = {row.camera: row for row in camera_state_rows(db, [deployment.id])}
    states: dict[str, CameraHealth] = {}
    for camera in deployment.cameras or []:
        name = str(camera.get("name"))
        health = _stored(rows.get(name), now)
        if health is None and live:
            health = CameraHealth(CameraStatus.CONNECTING, now, "no process has taken this camera up yet")
        if health is not None:
            states[name] = health
    return states


@dataclass(frozen=True)
class DeploymentCameras:
    """The cameras of one live deployment and which are down (the console's banner, /health)."""

    deployment_id: int
    name: str
    states: dict[str, CameraHealth]

    @property
    def down(self) -> list[str]:
        return sorted(name for name, health in self.states.items() if not health.state.up)

    @property
    def banner(self) -> str:
        return down_text(self.down, len(self.states)) if self.down else ""


def live_cameras(db: Session) -> list[DeploymentCameras]:
    """The cameras of every live deployment, with their health."""
    return [DeploymentCameras(row.id, row.name, camera_states(db, row, live=True)) for row in live_deployments(db)]


def cameras_down(session: Session) -> list[dict[str, Any]]:
    """For ``/health``: every camera of a live deployment that is not streaming (a finished file is not down)."""
    return [
        {"deployment": group.deployment_id, "camera": name, **group.states[name].as_dict()}
        for group in live_cameras(session)
        for name in group.down
    ]
