"""The runtime's parts (issue 18, items 1 and 5), without a pipeline: a run composed of typed parts rather than
inherited, its status typed, and each camera's state derived from its frames (stalled after the stall time, a
file read to its end finished, never stalled)."""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta

import pytest

from openlfr.clock import utc_now
from openlfr.runtime.books import Books
from openlfr.runtime.camera_health import (
    CameraHealth,
    CameraStateChanged,
    CameraStatus,
    CameraWatch,
    DeploymentCameras,
)
from openlfr.runtime.deployment_run import DeploymentRun, RunStatus
from openlfr.runtime.supervisor import RunState, Supervisor
from openlfr.stream.run_state import CameraState
from openlfr.stream.source import CameraConfig


def test_a_run_is_composed_of_typed_parts_not_inherited() -> None:
    assert DeploymentRun.__mro__ == (DeploymentRun, object)
    hints = DeploymentRun.__init__.__code__.co_names
    assert {"Books", "Supervisor", "CameraWatch", "MatchGuard", "ListingWatch"} <= set(hints)
    assert dataclasses.is_dataclass(RunStatus) and issubclass(RunState, str)
    fields = {field.name for field in dataclasses.fields(RunStatus)}
    assert {"state", "restarts", "alerts_held", "database_error", "cameras"} <= fields
    assert Books.__mro__ == (Books, object) and Supervisor.__mro__ == (Supervisor, object)


def test_a_camera_streams_stalls_reconnects_and_a_finished_file_never_stalls() -> None:
    told: list[CameraStateChanged] = []
    watch = CameraWatch(7, stall_s=0.5, on_change=told.append)
    watch.pipeline_starting(["north", "file"], restart=False)
    assert {name: h.state for name, h in watch.states().items()} == {
        "north": CameraStatus.CONNECTING,
        "file": CameraStatus.CONNECTING,
    }
    north, file = CameraState(CameraConfig("north", "rtsp://u:pw@127.0.0.1/x")), CameraState(CameraConfig("file", "/f"))
    north.last_frame_at = file.last_frame_at = time.monotonic()
    watch.pipeline_reports({"north": north, "file": file})
    assert watch.states()["north"].state is CameraStatus.STREAMING
    watch.set("file", CameraStatus.FINISHED, "the file was read to its end")
    last_frame = utc_now()
    deadline = time.monotonic() + 30
    while watch.states()["north"].state is CameraStatus.STREAMING and time.monotonic() < deadline:
        time.sleep(0.1)
        watch.look()
    stalled = watch.states()["north"]
    assert stalled.state is CameraStatus.STALLED and "no frame for 0.5 s" in stalled.reason
    assert abs(stalled.since - last_frame) < timedelta(seconds=5)  # "no signal since" the last frame, not now
    assert watch.states()["file"].state is CameraStatus.FINISHED  # a file that ended is done, not stalled
    watch.notice("north", "camera 'north' (rtsp://u:pw@127.0.0.1/x): connection refused; reconnecting in 1.0 s")
    reconnecting = watch.states()["north"]
    assert reconnecting.state is CameraStatus.RECONNECTING and "pw" not in reconnecting.reason
    north.last_frame_at = time.monotonic()
    watch.look()
    assert watch.states()["north"].state is CameraStatus.STREAMING
    assert [(e.camera, e.health.state, e.previous) for e in told if e.camera == "north"] == [
        ("north", CameraStatus.CONNECTING, None),
        ("north", CameraStatus.STREAMING, CameraStatus.CONNECTING),
        ("north", CameraStatus.STALLED, CameraStatus.STREAMING),
        ("north", CameraStatus.RECONNECTING, CameraStatus.STALLED),
        ("north", CameraStatus.STREAMING, CameraStatus.RECONNECTING),
    ]
    assert len({e.key for e in told}) == len(told)  # each change its own sink key


@pytest.mark.parametrize(
    ("states", "banner"),
    [
        ({"north": "stalled", "south": "streaming", "east": "streaming"}, "1 of 3 cameras down: nobody is being "
         "looked at on 'north'"),
        ({"north": "finished"}, ""),
        ({"north": "failed", "south": "reconnecting"}, "2 of 2 cameras down: nobody is being looked at on 'north', "
         "'south'"),
    ],
)  # fmt: skip
def test_the_banner_names_the_cameras_down(states: dict[str, str], banner: str) -> None:
    now = utc_now()
    group = DeploymentCameras(1, "High street", {n: CameraHealth(CameraStatus(s), now) for n, s in states.items()})
    assert group.banner == banner


def test_the_servers_runtime_is_held_in_one_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiles, the event board and the scheduler are fields of ``ServerState``, not loose ``app.state`` attributes."""
    from tests.serverkit import build_app, configure

    configure(monkeypatch)
    app = build_app(pipelines=True)
    try:
        state = app.state.server
        assert state.tiles is not None and state.events is not None and state.scheduler is not None
        loose = {name for name in ("tiles", "events", "scheduler") if hasattr(app.state, name)}
        assert not loose, f"server state outside ServerState: {loose}"
    finally:
        app.state.server.store.close()
