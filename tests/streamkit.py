"""Helpers for the live-pipeline tests: synthetic clips, real servers on 127.0.0.1 (RTSP, MQTT, HTTP, garbage)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageFilter

from openlfr.stream.detector import detect_in_area
from openlfr.stream.frames import YuvFrame
from openlfr.stream.source import CapturedFrame
from openlfr.vision.types import Box, Detection, FaceDetector
from tests.waitkit import hang_guard

HERE = Path(__file__).resolve().parent
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's Python, where python3-gi and GStreamer's RTSP server live


def yuv_frames(frames: Iterable[CapturedFrame]) -> Iterator[tuple[YuvFrame, CapturedFrame]]:
    """Each captured frame as a ``YuvFrame`` in one reused buffer, for feeding a pipeline frame by frame; each
    view is valid until the next frame (the live runner keeps a ring of buffers instead)."""
    buffer = np.empty(0, np.uint8)
    for captured in frames:
        if buffer.size != captured.format.nbytes:
            buffer = np.empty(captured.format.nbytes, np.uint8)
        captured.write_i420(buffer)
        yield YuvFrame(buffer, captured.format), captured


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def face_frame(face: np.ndarray, size: tuple[int, int], at: tuple[int, int] | None, face_px: int) -> np.ndarray:
    """A grey frame with the portrait ``face`` scaled to ``face_px`` wide pasted at ``at`` (or no face)."""
    width, height = size
    frame = np.full((height, width, 3), 90, np.uint8)
    if at is not None:
        portrait = np.asarray(Image.fromarray(face).resize((face_px, face_px), Image.Resampling.BILINEAR))
        x, y = at
        frame[y : y + face_px, x : x + face_px] = portrait[: height - y, : width - x]
    return frame


def write_face_clip(
    path: Path,
    face: np.ndarray,
    *,
    seconds: float = 3.0,
    fps: int = 15,
    size: tuple[int, int] = (640, 360),
    face_px: int = 240,
    visible: list[tuple[float, float]] | None = None,
    still_from: float | None = None,
    sharp_frames: set[int] | None = None,
) -> Path:
    """An H.264 MP4 in which the portrait walks slowly left to right while ``visible`` (default: always), and,
    from ``still_from`` seconds on, a second copy stands still in the bottom-left corner (give a tall frame);
    with ``sharp_frames``, every other frame is blurred (a Gaussian of 3 px)."""
    spans = visible if visible is not None else [(0.0, seconds)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(fps)}
        frames = int(seconds * fps)
        for index in range(frames):
            t = index / fps
            shown = any(start <= t < end for start, end in spans)
            x = int(20 + (size[0] - face_px - 40) * index / max(frames - 1, 1))
            image = face_frame(face, size, (x, (size[1] - face_px) // 2) if shown else None, face_px)
            if still_from is not None and t >= still_from:
                corner = face_frame(face, size, (20, size[1] - face_px), face_px)
                image[size[1] - face_px :, 20 : 20 + face_px] = corner[size[1] - face_px :, 20 : 20 + face_px]
            if sharp_frames is not None and index not in sharp_frames:
                image = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(3)))
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


class GarbageServer:
    """Answers every TCP connection with random bytes: a 'stream' that is not a video."""

    def __init__(self) -> None:
        self.port = free_port()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))
        self._sock.listen(8)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        rng = np.random.default_rng(1)
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with contextlib.suppress(OSError), conn:
                for _ in range(64):
                    conn.sendall(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(2)


class RtspServer:
    """GStreamer's RTSP server (Debian's python3-gi) serving an H.264 MP4 at rtsp://127.0.0.1:PORT/clip."""

    def __init__(self, clip: Path, port: int | None = None) -> None:
        if not Path(SYSTEM_PYTHON).exists():
            pytest.skip("Debian's python3 with GStreamer's RTSP server is not installed")
        check = subprocess.run(
            [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"], capture_output=True
        )
        if check.returncode != 0:
            pytest.skip("GStreamer's RTSP server (gir1.2-gst-rtsp-server-1.0, python3-gi) is not installed")
        self.clip = clip
        self.port = port or free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/clip"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(HERE / "rtsp_server.py"), str(self.clip), str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "ready" once it listens
        if b"ready" not in line:
            raise RuntimeError(f"the RTSP server did not start: {line!r}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.process = None


class Mosquitto:
    """Debian's mosquitto broker on a free port of 127.0.0.1."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            pytest.skip("Debian's mosquitto is not installed")
        self.binary = binary
        self.port = free_port()
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + hang_guard(10)  # a loaded machine starts it slowly; a dead one says so at once
        while time.monotonic() < deadline and self.process.poll() is None:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start (exit status {self.process.poll()})")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(5)
            self.process = None


class Receiver(BaseHTTPRequestHandler):
    """A webhook receiver whose answers the test scripts: ``server.script`` is a list of status codes."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        server = self.server
        status = server.script.pop(0) if server.script else 200  # type: ignore[attr-defined]
        server.requests.append((status, dict(self.headers), body))  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


@contextlib.contextmanager
def webhook_receiver(script: list[int]) -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.script = list(script)  # type: ignore[attr-defined]
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def openlfr_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "OPENLFR_DATA_DIR": str(data_dir), **extra}
    env.pop("OPENLFR_DATABASE_URL", None)
    return env


def run_openlfr(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HERE.parent / ".venv" / "bin" / "openlfr"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def portrait(image: np.ndarray) -> np.ndarray:
    """The astronaut fixture cropped to her head (the picture also shows a patch HOG takes for a face)."""
    return np.ascontiguousarray(image[30:210, 130:310])


class LateDetector:
    """Whole-picture detection answered ``lag`` frames late, as the detector process answers it, but run here:
    its CPU time is booked apart (``cpu_s``) so a benchmark can tell the analysis's share from the detector's."""

    def __init__(self, detector: FaceDetector, lag: int = 2) -> None:
        self.detector, self.lag = detector, lag
        self.pending: list[tuple[int, float, list[Detection]]] = []
        self.submitted = 0
        self.cpu_s = 0.0

    def busy(self) -> bool:
        return bool(self.pending)

    def submit(self, frame: YuvFrame, area: Box, clock: float, factor: float) -> None:
        start = time.process_time()
        found = detect_in_area(self.detector, frame, area, factor)
        self.cpu_s += time.process_time() - start
        self.pending.append((self.lag, clock, found))
        self.submitted += 1

    def poll(self) -> tuple[float, list[Detection]] | None:
        if not self.pending:
            return None
        frames, clock, found = self.pending[0]
        if frames > 0:
            self.pending[0] = (frames - 1, clock, found)
            return None
        self.pending.pop(0)
        return clock, found
