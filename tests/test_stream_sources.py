"""Video sources: a clear, per-camera error for each bad source; pacing, frame-rate cap and reconnection."""

from __future__ import annotations

import itertools
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import numpy as np
import pytest

from openlfr.stream.source import (
    CameraConfig,
    Capture,
    CaptureOptions,
    SourceError,
    SourceKind,
    default_camera_name,
    source_kind,
)
from tests.streamkit import GarbageServer, free_port, portrait, write_face_clip

QUICK = CaptureOptions(reconnect_attempts=2, backoff_initial_s=0.05, open_timeout_s=3.0, read_timeout_s=3.0)


def frames_of(url: str, options: CaptureOptions = QUICK, notices: list[str] | None = None) -> int:
    capture = Capture(CameraConfig("cam", url), options, on_notice=(notices.append if notices is not None else None))
    return sum(1 for _ in capture.frames())


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    return write_face_clip(tmp_path_factory.mktemp("src") / "clip.mp4", portrait(astronaut), seconds=2.0, fps=15)


def test_source_kinds_and_names() -> None:
    assert source_kind("/videos/a.mp4") is SourceKind.FILE
    assert source_kind("rtsp://10.0.0.5/stream1") is SourceKind.STREAM
    assert source_kind("http://cam.local/mjpeg") is SourceKind.STREAM
    assert source_kind("/dev/video0") is SourceKind.DEVICE and source_kind("camera:1") is SourceKind.DEVICE
    taken = {"a"}
    assert default_camera_name("/videos/a.mp4", taken) == "a-2"
    assert default_camera_name("rtsp://10.0.0.5/door/main", set()) == "10.0.0.5-door-main"


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"camera 'cam' \(.*nothere\.mp4\): no such file"):
        frames_of(str(tmp_path / "nothere.mp4"))


@pytest.mark.parametrize("content", [b"this is a text file, not a video\n" * 20, b""])
def test_a_file_that_is_not_a_video(tmp_path: Path, content: bytes) -> None:
    fake = tmp_path / "holiday.mp4"
    fake.write_bytes(content)
    with pytest.raises(SourceError, match="not a video FFmpeg can read"):
        frames_of(str(fake))


def test_an_unreachable_url_is_retried_then_given_up() -> None:
    notices: list[str] = []
    url = f"rtsp://127.0.0.1:{free_port()}/stream"
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"connection refused.*gave up after 2 attempts"):
        frames_of(url, notices=notices)
    assert len(notices) == 1 and "reconnecting in 0.1 s" in notices[0]
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("scheme", ["tcp", "http", "rtsp"])
def test_a_stream_of_garbage(scheme: str) -> None:
    server = GarbageServer()
    try:
        with pytest.raises(SourceError, match=r"not a video|broke off") as caught:
            frames_of(f"{scheme}://127.0.0.1:{server.port}/live")
        assert "gave up after 2 attempts" in str(caught.value)
    finally:
        server.close()


def test_files_decode_fast_or_at_their_own_pace(clip: Path) -> None:
    started = time.monotonic()
    assert frames_of(str(clip), CaptureOptions()) == 30
    fast = time.monotonic() - started
    capture = Capture(CameraConfig("cam", str(clip)), CaptureOptions(realtime=True))
    started = time.monotonic()
    frames = list(capture.frames())
    paced = time.monotonic() - started
    assert len(frames) == 30 and paced >= 1.8 and fast < paced
    # Arrival is when a camera would have delivered the frame: 1/15 s apart.
    assert np.allclose(np.diff([f.arrival for f in frames]), 1 / 15, atol=1e-3)
    assert [f.clock for f in frames][:3] == pytest.approx([0.0, 1 / 15, 2 / 15], abs=1e-3)


def test_a_frame_rate_cap_skips_frames_before_any_copy(clip: Path) -> None:
    capture = Capture(CameraConfig("cam", str(clip), fps_cap=5.0), CaptureOptions())
    kept = list(capture.frames())
    assert capture.decoded == 30 and len(kept) == 10 and capture.skipped == 20


def test_a_live_stream_that_ends_is_reopened(tmp_path: Path, clip: Path) -> None:
    """An HTTP 'camera' that closes after each clip: the capture reconnects and keeps counting frames."""
    transport = tmp_path / "clip.ts"
    with av.open(str(clip)) as source, av.open(str(transport), "w", format="mpegts") as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)
    payload = transport.read_bytes()
    served = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.append(1)
            self.send_response(200)
            self.send_header("Content-Type", "video/mp2t")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    capture = Capture(
        CameraConfig("http-cam", f"http://127.0.0.1:{server.server_address[1]}/live.ts"),
        CaptureOptions(reconnect_attempts=3, backoff_initial_s=0.05),
        on_notice=lambda message: None,
    )
    clocks = []
    try:
        for frame in capture.frames(stop):
            clocks.append(frame.clock)
            if len(clocks) >= 75:  # two and a half times the clip
                stop.set()
    finally:
        server.shutdown()
        server.server_close()
    assert capture.reconnects >= 2 and len(served) >= 3
    assert all(later >= earlier for earlier, later in itertools.pairwise(clocks)), "one timeline"
