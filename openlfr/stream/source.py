"""Video sources through FFmpeg (PyAV): files, network streams (RTSP, HTTP, ...) and local cameras.

A :class:`Capture` turns one camera into an iterator of decoded frames in planar YUV, with

* files read as fast as they decode, or paced to their timestamps (``realtime``), as a live camera would
  deliver them;
* network streams and devices reopened with exponential backoff when they fail or end (a live source never
  ends on purpose), until ``reconnect_attempts`` consecutive failures;
* a frame-rate cap (frames above it are skipped before any copy);
* every failure turned into a :class:`SourceError` whose message names the camera and says what went wrong.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

import av
import av.error
import numpy as np

from openlfr.errors import OpenLFRError
from openlfr.stream.frames import FrameFormat
from openlfr.urls import CameraHostRefused, check_camera_host, redact_text, redact_url
from openlfr.vision.types import Box

log = logging.getLogger(__name__)

STREAM_SCHEMES = {"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp", "mms"}
# FFmpeg colour-space codes (AVColorSpace) that mean BT.601; 1 is BT.709; anything else is guessed by size.
_BT601_CODES = {5, 6, 7}
GAP_FRAMES = 3  # frames further apart than this many frame durations leave a gap in a file's coverage
BAD_PACKETS_MAX = 500  # a file whose decoder refuses this many packets in a row is not read on


class SourceError(OpenLFRError):
    """A camera cannot be opened or read. The message is for the operator and names the camera."""


class SourceKind(StrEnum):
    FILE = "file"
    STREAM = "stream"
    DEVICE = "device"


@dataclass(frozen=True)
class CameraConfig:
    """One camera: where to read it and what part of it matters."""

    name: str
    url: str = field(repr=False)  # may carry the camera's credentials: shown only through ``shown_url``
    shown_as: str = ""  # what to show instead of ``url`` (an uploaded file's reference, not its path on the server)
    fps_cap: float = 0.0  # frames per second handed to analysis at most; 0 = every decoded frame
    roi: Box | None = None  # region of interest in frame pixels; None = the whole frame
    min_face_px: int = 0  # faces shorter than this are ignored; 0 = the pipeline default
    start_at_s: float = 0.0  # files: begin at this media time (a resumed deployment); live sources ignore it
    counted_to_s: float = float("-inf")  # files: frames up to this media time were counted by an earlier run

    @property
    def kind(self) -> SourceKind:
        return source_kind(self.url)

    @property
    def shown_url(self) -> str:
        return self.shown_as or redact_url(self.url)


@dataclass(frozen=True)
class CaptureOptions:
    realtime: bool = False  # pace files to their timestamps instead of decoding as fast as possible
    open_timeout_s: float = 5.0
    read_timeout_s: float = 5.0
    reconnect_attempts: int = 10  # consecutive failed (re)connections before a live camera gives up; 0 = never
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    max_pixels: int = 3840 * 2160  # larger frames are scaled down on capture
    allowed_hosts: str = ""  # the admin's camera networks and hosts (``openlfr.urls.check_camera_host``); "": all


@dataclass
class FileReading:
    """How much of a file its frames covered, from the frames decoded (never from what its header claims): a
    retrospective search's coverage. Frames at or before the camera's ``counted_to_s`` were counted by an earlier
    run (a resume's overlap) and only count as ``recounted``."""

    start_s: float = 0.0  # the video stream's first timestamp
    frame_s: float = 0.0  # one frame's duration
    decoded: int = 0  # frames decoded past ``counted_to_s``
    recounted: int = 0
    gap_s: float = 0.0  # footage skipped between frames decoded (undecodable packets, holes in the timeline)
    bad_packets: int = 0  # packets the decoder refused (skipped, as FFmpeg's own tools do)
    last_time: float | None = None  # media time of the last frame decoded

    def see(self, media_time: float, counted_to: float) -> None:
        if media_time <= counted_to:
            self.recounted += 1
            return
        self.decoded += 1
        if self.last_time is not None and media_time - self.last_time > GAP_FRAMES * self.frame_s:
            self.gap_s += media_time - self.last_time - self.frame_s
        self.last_time = media_time


@dataclass
class CapturedFrame:
    """One decoded frame. ``clock`` drives the pipeline's timing; ``arrival`` is when it became available."""

    index: int  # decoded frames so far on this camera, from 0 (across reconnections)
    clock: float  # seconds on the camera's own timeline: media time for files, time since start for live
    media_time: float  # presentation time within the current file or connection
    arrival: float  # time.monotonic() at which the frame was (or, paced, was due to be) available
    format: FrameFormat
    frame: av.VideoFrame

    def write_i420(self, out: np.ndarray) -> None:
        """Copy the frame's planes into ``out`` (packed I420, ``format.nbytes`` bytes): the only copy made."""
        write_i420(self.frame, out)


def source_kind(url: str) -> SourceKind:
    if url.startswith("/dev/video") or url.startswith("camera:"):
        return SourceKind.DEVICE
    scheme = urlsplit(url).scheme.lower()
    if scheme in STREAM_SCHEMES:
        return SourceKind.STREAM
    return SourceKind.FILE


def default_camera_name(url: str, taken: set[str]) -> str:
    """A short readable name: the file's stem, or the stream's host and path."""
    kind = source_kind(url)
    if kind is SourceKind.FILE:
        base = Path(url).stem or "camera"
    elif kind is SourceKind.DEVICE:
        base = url.rsplit("/", 1)[-1].replace("camera:", "camera")
    else:
        parts = urlsplit(url)
        base = (parts.hostname or "stream") + (parts.path.replace("/", "-").rstrip("-") or "")
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def frame_format(frame: av.VideoFrame) -> FrameFormat:
    code = int(getattr(frame, "colorspace", 2) or 2)
    if code == 1:
        matrix = "bt709"
    elif code in _BT601_CODES:
        matrix = "bt601"
    else:  # untagged: the usual convention, HD is BT.709 and SD BT.601
        matrix = "bt709" if frame.height >= 720 else "bt601"
    full = frame.format.name.startswith("yuvj") or int(getattr(frame, "color_range", 0) or 0) == 2
    return FrameFormat(frame.width, frame.height, matrix, full)


def to_i420_frame(frame: av.VideoFrame, max_pixels: int) -> av.VideoFrame:
    """Make the frame planar 4:2:0 with even dimensions no larger than ``max_pixels`` (usually a no-op)."""
    width, height = frame.width, frame.height
    if width * height > max_pixels:
        factor = (max_pixels / (width * height)) ** 0.5
        width, height = int(width * factor), int(height * factor)
    width, height = width - width % 2, height - height % 2
    if frame.format.name in ("yuv420p", "yuvj420p") and (width, height) == (frame.width, frame.height):
        return frame
    return frame.reformat(width=width, height=height, format="yuv420p")


def write_i420(frame: av.VideoFrame, out: np.ndarray) -> None:
    flat = out.reshape(-1)
    offset = 0
    for plane in frame.planes[:3]:
        rows, cols = plane.height, plane.width
        source = np.frombuffer(memoryview(plane), np.uint8).reshape(rows, plane.line_size)[:, :cols]
        flat[offset : offset + rows * cols].reshape(rows, cols)[:] = source
        offset += rows * cols


def describe_error(camera: CameraConfig, exc: BaseException) -> str:
    """One sentence for the operator: which camera, which source, what went wrong."""
    where = f"camera {camera.name!r} ({camera.shown_url})"
    code = getattr(exc, "errno", None)
    # FFmpeg's errors quote the URL they failed on (PyAV adds it as the file name): redacted like any other.
    reason = redact_text(getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
    if isinstance(exc, av.error.FileNotFoundError) or code == errno.ENOENT:
        return f"{where}: no such file or stream"
    if isinstance(exc, av.error.InvalidDataError):
        what = "file" if camera.kind is SourceKind.FILE else "source"
        return f"{where}: the {what} is not a video FFmpeg can read ({reason})"
    if isinstance(exc, ConnectionRefusedError) or code == errno.ECONNREFUSED:
        return f"{where}: connection refused (is the camera or server up?)"
    if isinstance(exc, TimeoutError | av.error.ExitError) or code == errno.ETIMEDOUT:
        return f"{where}: no data within the timeout ({reason})"
    if isinstance(exc, ConnectionResetError | BrokenPipeError) or code in (errno.ECONNRESET, errno.EPIPE):
        return f"{where}: the connection broke off ({reason})"
    if code == errno.EIO:
        return f"{where}: the source broke off or is not a video stream ({reason})"
    if isinstance(exc, av.error.HTTPError):
        return f"{where}: the server answered with an HTTP error ({reason})"
    if isinstance(exc, PermissionError):
        return f"{where}: permission denied"
    return f"{where}: {reason}"


class Capture:
    """Decode one camera, reconnecting live sources; see the module docstring."""

    def __init__(
        self,
        camera: CameraConfig,
        options: CaptureOptions | None = None,
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        self.camera = camera
        self.options = options or CaptureOptions()
        self.on_notice = on_notice or (lambda message: log.warning("%s", message))
        self.decoded = 0
        self.skipped = 0  # above the frame-rate cap
        self.reconnects = 0
        self.max_lag_s = 0.0  # realtime files: how far decoding fell behind the clip's own pace
        self.reading = FileReading()
        self._index = 0

    # ----- opening -----

    def _open(self) -> av.container.InputContainer:
        camera, options = self.camera, self.options
        kind = camera.kind
        container_options: dict[str, str] = {}
        fmt: str | None = None
        url = camera.url
        if kind is SourceKind.FILE:
            path = Path(url)
            if not path.exists():
                raise SourceError(f"camera {camera.name!r} ({camera.shown_url}): no such file")
            if not path.is_file():
                raise SourceError(f"camera {camera.name!r} ({camera.shown_url}): not a file")
        elif kind is SourceKind.DEVICE:
            fmt = "v4l2"
            if url.startswith("camera:"):
                url = f"/dev/video{url.split(':', 1)[1] or '0'}"
        else:
            try:  # at each connection: the list may have changed since the draft, and so may the host's addresses
                check_camera_host(url, options.allowed_hosts)
            except CameraHostRefused as refused:
                raise SourceError(f"camera {camera.name!r} ({camera.shown_url}): {refused}") from None
            if urlsplit(url).scheme.lower() in ("rtsp", "rtsps"):
                container_options["rtsp_transport"] = "tcp"  # no lost UDP packets, and it passes firewalls
        try:
            container = av.open(
                url,
                format=fmt,
                options=container_options,
                timeout=(options.open_timeout_s, options.read_timeout_s),
            )
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(describe_error(camera, exc)) from None
        if not container.streams.video:
            container.close()
            raise SourceError(f"camera {camera.name!r} ({camera.shown_url}): no video stream in this source")
        return container

    # ----- reading -----

    def frames(self, stop: threading.Event | None = None) -> Iterator[CapturedFrame]:
        stop = stop or threading.Event()
        if self.camera.kind is SourceKind.FILE:
            yield from self._read_file(stop)
        else:
            yield from self._read_live(stop)

    def _read_file(self, stop: threading.Event) -> Iterator[CapturedFrame]:
        container = self._open()
        try:
            start_at = self.camera.start_at_s
            if start_at > 0:
                stream = container.streams.video[0]
                if stream.time_base is not None:  # to the keyframe before it; _decode skips up to the time
                    container.seek(int(start_at / stream.time_base), stream=stream, backward=True)
            yield from self._decode(container, stop, live=False, started=time.monotonic())
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(describe_error(self.camera, exc)) from None
        finally:
            container.close()

    def _read_live(self, stop: threading.Event) -> Iterator[CapturedFrame]:
        failures = 0
        started = time.monotonic()
        while not stop.is_set():
            decoded_before = self.decoded
            try:
                container = self._open()
            except SourceError as exc:
                failures += 1
                self._give_up_or_wait(str(exc), failures, stop)
                continue
            try:
                yield from self._decode(container, stop, live=True, started=started)
                ended = f"camera {self.camera.name!r} ({self.camera.shown_url}): the stream ended"
            except (av.error.FFmpegError, OSError) as exc:
                ended = describe_error(self.camera, exc)
            finally:
                container.close()
            if stop.is_set():
                return
            failures = 0 if self.decoded > decoded_before else failures + 1
            self.reconnects += 1
            self._give_up_or_wait(ended, max(failures, 1), stop)

    def _give_up_or_wait(self, message: str, failures: int, stop: threading.Event) -> None:
        options = self.options
        if options.reconnect_attempts and failures >= options.reconnect_attempts:
            raise SourceError(f"{message}; gave up after {failures} attempts")
        delay = min(options.backoff_max_s, options.backoff_initial_s * 2 ** (failures - 1))
        self.on_notice(f"{message}; reconnecting in {delay:.1f} s")
        stop.wait(delay)

    def _decode(
        self,
        container: av.container.InputContainer,
        stop: threading.Event,
        *,
        live: bool,
        started: float,
    ) -> Iterator[CapturedFrame]:
        stream = container.streams.video[0]
        # Frame threading adds a frame of delay per thread: fine for files, not for a live camera.
        stream.thread_type = "SLICE" if live else "AUTO"
        pace = self.options.realtime and not live
        cap = self.camera.fps_cap
        start_at = 0.0 if live else self.camera.start_at_s
        # A file's clock is its media time from the stream's start, also when resumed part-way.
        first_time: float | None = None
        if start_at > 0 and stream.start_time is not None and stream.time_base is not None:
            first_time = float(stream.start_time * stream.time_base)
        paced_from: float | None = None
        wall_start = time.monotonic()
        next_due = 0.0
        if not live:
            self.reading.start_s = (
                float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0
            )
            self.reading.frame_s = 1.0 / float(stream.average_rate or stream.guessed_rate or 25)
        for frame in container.decode(stream) if live else self._decode_file(container, stream):
            if stop.is_set():
                return
            now = time.monotonic()
            media_time = (
                float(frame.time) if frame.time is not None else self.decoded / float(stream.average_rate or 25)
            )
            if media_time + 1e-6 < start_at:  # decoded from the keyframe before the resume point
                continue
            if not live:
                self.reading.see(media_time, self.camera.counted_to_s)
            if first_time is None:
                first_time = 0.0 if start_at > 0 else media_time
            relative = max(0.0, media_time - first_time)
            if live:
                clock, arrival = now - started, now
            else:
                clock = relative
                arrival = now
                if paced_from is None:
                    paced_from = relative
                if pace:
                    due = wall_start + relative - paced_from
                    if due > now:
                        stop.wait(due - now)
                    else:
                        self.max_lag_s = max(self.max_lag_s, now - due)
                    # A live camera would have delivered it at ``due``: lateness counts as latency.
                    arrival = due
            self.decoded += 1
            if cap > 0:
                if clock + 1e-6 < next_due:
                    self.skipped += 1
                    continue
                next_due = max(next_due + 1.0 / cap, clock)
            converted = to_i420_frame(frame, self.options.max_pixels)
            index = self._index
            self._index += 1
            yield CapturedFrame(index, clock, media_time, arrival, frame_format(converted), converted)

    def _decode_file(self, container: av.container.InputContainer, stream: av.VideoStream) -> Iterator[av.VideoFrame]:
        """A file's frames, packet by packet: a packet the decoder refuses (a damaged or truncated file) is skipped
        and counted, as FFmpeg's own tools do, and the frames missing around it show as a gap in the coverage."""
        refused = 0
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                self.reading.bad_packets += 1
                refused += 1
                if refused >= BAD_PACKETS_MAX:
                    raise
                continue
            refused = 0
            yield from frames
