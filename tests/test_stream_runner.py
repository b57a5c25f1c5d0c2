"""Several cameras in one run, each analysed in its own process: bad sources fail alone, files are analysed
frame by frame or paced like a camera, and a real RTSP server that dies mid-stream is reconnected to."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from openlfr.settings import Settings
from openlfr.stream.evidence import EvidenceRule
from openlfr.stream.pipeline import AlertFound
from openlfr.stream.runner import CameraState, PipelineRunner, RunnerOptions
from openlfr.stream.source import CameraConfig, CaptureOptions
from openlfr.stream.trace import TrackPaths
from openlfr.watchlist.search import Gallery
from tests.streamkit import GarbageServer, RtspServer, free_port, portrait, write_face_clip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    return write_face_clip(tmp_path_factory.mktemp("runner") / "door.mp4", portrait(astronaut), seconds=3.0)


@pytest.fixture(scope="module")
def gallery(engine, astronaut: np.ndarray) -> Gallery:  # type: ignore[no-untyped-def]
    (face,) = [f for f in engine.faces(astronaut) if f.box.top < 200]
    fillers = np.random.default_rng(0).normal(size=(9, engine.embedder.dimension)).astype(np.float32)
    vectors = np.vstack([face.embedding[None, :], fillers / np.linalg.norm(fillers, axis=1, keepdims=True)])
    return Gallery(vectors, ["eileen", *[f"filler-{i}" for i in range(9)]], list(range(10)), engine.model_id)


def runner_for(
    cameras: list[CameraConfig], gallery: Gallery, options: RunnerOptions, **hooks: object
) -> tuple[PipelineRunner, list[AlertFound], list[tuple[str, str]]]:
    alerts: list[AlertFound] = []
    errors: list[tuple[str, str]] = []
    runner = PipelineRunner(
        cameras,
        Settings(),
        gallery,
        EvidenceRule(0.8),
        on_alert=alerts.append,
        on_error=lambda camera, message: errors.append((camera, message)),
        on_notice=lambda camera, message: None,
        options=options,
        **hooks,  # type: ignore[arg-type]
    )
    return runner, alerts, errors


def test_bad_sources_fail_alone_while_the_good_cameras_alert(clip: Path, gallery: Gallery, tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 100)
    garbage = GarbageServer()
    cameras = [
        CameraConfig("door", str(clip)),
        CameraConfig("lobby", str(clip)),
        CameraConfig("missing", str(tmp_path / "missing.mp4")),
        CameraConfig("text", str(text)),
        CameraConfig("unreachable", f"rtsp://127.0.0.1:{free_port()}/cam"),
        CameraConfig("garbage", f"tcp://127.0.0.1:{garbage.port}"),
    ]
    quick = CaptureOptions(reconnect_attempts=2, backoff_initial_s=0.1)
    runner, alerts, errors = runner_for(cameras, gallery, RunnerOptions(capture=quick))
    try:
        summary = runner.run()
    finally:
        garbage.close()
    assert sorted((a.camera, a.person_id) for a in alerts) == [("door", "eileen"), ("lobby", "eileen")]
    assert sorted(camera for camera, _ in errors) == ["garbage", "missing", "text", "unreachable"]
    messages = dict(errors)
    assert "no such file" in messages["missing"]
    assert "not a video" in messages["text"]
    assert "connection refused" in messages["unreachable"] and "gave up" in messages["unreachable"]
    assert "not a video" in messages["garbage"] or "broke off" in messages["garbage"]
    for name in ("door", "lobby"):
        counters = summary.cameras[name].counters
        assert counters.decoded == counters.processed == 45, "from a file, as fast as possible: every frame"
        assert counters.alerts == 1 and summary.cameras[name].error is None
    assert summary.errors.keys() == {"missing", "text", "unreachable", "garbage"}
    line = summary.line()
    assert list(line) == ["type", "frames", "faces_seen", "tracks", "alerts", "fps", "latency_ms_p50", "latency_ms_p95"]
    assert line["frames"] == 90 and line["alerts"] == 2


def test_realtime_paces_files_like_a_camera(clip: Path, gallery: Gallery) -> None:
    traced: list[TrackPaths] = []
    options = RunnerOptions(realtime=True, trace_tracks=True)  # benchmarks/cameras.py's matching of runs
    runner, alerts, errors = runner_for([CameraConfig("door", str(clip))], gallery, options, on_tracks=traced.append)
    summary = runner.run()
    assert not errors and [a.person_id for a in alerts] == ["eileen"]
    counters = summary.cameras["door"].counters
    assert counters.decoded == 45 and counters.processed + counters.dropped == 45
    assert 2.7 <= summary.elapsed_s <= 6.0, "three seconds of video take about three seconds"
    latency = summary.latency
    assert latency.count == counters.processed and latency.percentile(95) is not None
    # the whole-picture detector's CPU is told apart from the analysis's
    state = summary.cameras["door"]
    assert 0.0 < state.detector_cpu_s < state.analysis_cpu_s
    # the embedded tracks' paths (times and boxes only), the alerted one among them, in media time order
    (paths,) = traced
    assert paths.camera == "door" and alerts[0].track_id in paths.paths and len(paths.paths) <= counters.tracks
    for path in paths.paths.values():
        times = [point[0] for point in path]
        assert times == sorted(times) and all(0.0 <= t <= 3.0 for t in times)
        assert all(0 <= left < right and 0 <= top < bottom for _, left, top, right, bottom in path)


def test_matching_can_be_switched_off_while_running(clip: Path, gallery: Gallery) -> None:
    runner, alerts, _ = runner_for([CameraConfig("door", str(clip))], gallery, RunnerOptions(), may_match=lambda: False)
    summary = runner.run()
    assert not alerts
    counters = summary.cameras["door"].counters
    assert counters.embeddings == 0 and counters.faces_seen > 0


def test_a_real_rtsp_server_stopped_and_restarted(tmp_path: Path, astronaut: np.ndarray, gallery: Gallery) -> None:
    """The face appears 3 s into the clip; the server dies 1 s in and comes back: the pipeline reconnects, the
    clip starts again, the frames keep counting, and the alert still arrives."""
    clip = write_face_clip(tmp_path / "rtsp.mp4", portrait(astronaut), seconds=6.0, visible=[(3.0, 6.0)])
    server = RtspServer(clip)
    server.start()
    decoded = {"now": 0, "at_stop": 0}

    def on_stats(states: dict[str, CameraState]) -> None:
        decoded["now"] = states["street"].counters.decoded

    options = RunnerOptions(
        capture=CaptureOptions(reconnect_attempts=30, backoff_initial_s=0.2, backoff_max_s=1.0, read_timeout_s=3.0),
        report_interval_s=0.2,
    )
    runner, alerts, errors = runner_for([CameraConfig("street", server.url)], gallery, options, on_stats=on_stats)
    results = {}
    thread = threading.Thread(target=lambda: results.setdefault("summary", runner.run()), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while decoded["now"] < 15 and time.monotonic() < deadline:  # one second of video
            time.sleep(0.05)
        assert decoded["now"] >= 15, "the pipeline never got frames from the RTSP server"
        server.stop()
        decoded["at_stop"] = decoded["now"]
        assert not alerts, "the face is not in the first seconds"
        time.sleep(2.0)
        server.start()
        while not alerts and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        runner.stop()
        thread.join(60)
        server.stop()
    summary = results["summary"]
    counters = summary.cameras["street"].counters
    assert [a.person_id for a in alerts] == ["eileen"]
    assert counters.reconnects >= 1 and counters.decoded > decoded["at_stop"] + 30
    assert not errors


class ExplodingGallery:
    """A watchlist whose search raises: a bug in one camera's analysis."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    def search(self, probes: np.ndarray, k: int = 5) -> list[list[object]]:
        raise RuntimeError("search index corrupted")


class DyingGallery(ExplodingGallery):
    """Kills the analysis process outright as it starts (as an out-of-memory kill would)."""

    def __setstate__(self, state: dict[str, object]) -> None:
        import os

        os._exit(3)


@pytest.mark.parametrize(
    ("broken", "message"),
    [(ExplodingGallery, "analysis failed: RuntimeError: search index corrupted"), (DyingGallery, "exit code 3")],
)
def test_a_failing_analysis_is_reported_for_its_camera(clip: Path, engine, broken, message: str) -> None:  # type: ignore[no-untyped-def]
    runner, alerts, errors = runner_for([CameraConfig("door", str(clip))], broken(engine.model_id), RunnerOptions())
    summary = runner.run()
    assert not alerts
    assert [camera for camera, _ in errors] == ["door"] and message in errors[0][1]
    assert summary.cameras["door"].error is not None


def test_a_detector_process_is_ready_with_its_model_run_once_before_the_camera_starts() -> None:
    """A camera's analysis says it is ready only once its detector process has loaded the model and run it on a
    blank half-size frame: three cameras starting together otherwise lost the faces of their first second to the
    detector's start-up (issue 21). The detector answers ``DetectorReady`` first, then requests as before."""
    import multiprocessing

    from openlfr.stream.detector import DetectorSpec, RemoteDetector, detector_main
    from openlfr.stream.frames import FrameFormat, YuvFrame
    from openlfr.vision.types import Box

    ctx = multiprocessing.get_context("spawn")
    requests, results = ctx.Queue(), ctx.Queue()
    process = ctx.Process(target=detector_main, args=(DetectorSpec(Settings(), 0), requests, results), daemon=True)
    process.start()
    remote = RemoteDetector(requests, results)
    try:
        remote.wait_ready(180.0)
        frame = YuvFrame(np.full(320 * 240 * 3 // 2, 128, np.uint8), FrameFormat(320, 240))
        remote.submit(frame, Box(0, 0, 320, 240), 1.5, 0.5)
        deadline = time.monotonic() + 120.0
        answer = remote.poll()
        while answer is None and time.monotonic() < deadline:
            time.sleep(0.05)
            answer = remote.poll()
        assert answer == (1.5, []), "a grey frame: no face, the answer of the request sent"
    finally:
        requests.put(None)
        process.join(timeout=30)
        remote.close()
    assert process.exitcode == 0
