"""Whole-picture detection in a process of its own, beside a camera's analysis process.

On a live camera the analysis must not stop for the 50-200 ms a 1080p whole-picture detection takes: while a
second core searches the whole picture, the analysis keeps following its tracks frame by frame, and takes the
detections in when they arrive (``CameraPipeline._adopt``: faces it already follows are ignored, new ones are
found again in the current frame around where they were). One detection is in flight at a time; the searched
area's YUV planes cross in a shared-memory block owned by the analysis process, and the detector process makes
the picture it searches from them (``detection_picture``: luma for HOG, colour for RetinaFace, which finds half
as many small faces in grey).
"""

from __future__ import annotations

import contextlib
import queue
import signal
import time
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

import numpy as np
from PIL import Image

from openlfr.settings import Settings
from openlfr.stream.frames import FrameFormat, YuvFrame, clip_box, even_box, i420_size, yuv_to_rgb
from openlfr.stream.lifeline import die_with_parent
from openlfr.vision.types import Box, Detection, FaceDetector


def detection_picture(frame: YuvFrame, area: Box, factor: float, colour: bool) -> np.ndarray:
    """The area of the frame resized by ``factor``, as the detector reads it: grey (luma) or RGB.

    A shrunk colour picture is made by resizing the planes first and converting the small result: converting
    costs per pixel (~100 ms for a whole 1080p frame), resizing a plane a fraction of that. At half size or less
    the luma is first averaged 2x2 onto the chroma planes' grid (a whole 1080p frame at half size: ~10 ms).
    """
    area = even_box(clip_box(area, frame.width, frame.height), frame.width, frame.height)
    size = (max(1, round(area.width * factor)), max(1, round(area.height * factor)))
    y = frame.y[area.top : area.bottom, area.left : area.right]
    if not colour:
        grey = np.ascontiguousarray(y)
        return grey if size == (area.width, area.height) else _resize(grey, size)
    if factor >= 1.0:
        rgb, _ = frame.rgb(area)
        return rgb if (rgb.shape[1], rgb.shape[0]) == size else _resize(rgb, size)
    top, left, bottom, right = area.top // 2, area.left // 2, area.bottom // 2, area.right // 2
    if factor <= 0.5:
        total = y[0::2, 0::2].astype(np.uint16) + y[1::2, 0::2] + y[0::2, 1::2] + y[1::2, 1::2]
        y = ((total + 2) >> 2).astype(np.uint8)
    planes = [y, frame.u[top:bottom, left:right], frame.v[top:bottom, left:right]]
    y, u, v = (p if (p.shape[1], p.shape[0]) == size else _resize(np.ascontiguousarray(p), size) for p in planes)
    return yuv_to_rgb(y, u, v, frame.format)


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def detect_in_area(detector: FaceDetector, frame: YuvFrame, area: Box, factor: float) -> list[Detection]:
    """Detections in an area of the frame searched at ``factor``, in the frame's pixels (landmarks too)."""
    return detect_in_areas(detector, frame, [(area, factor)])[0]


def detect_in_areas(
    detector: FaceDetector, frame: YuvFrame, searches: list[tuple[Box, float]]
) -> list[list[Detection]]:
    """``detect_in_area`` for several (area, factor) searches of one frame; a detector that can search several
    pictures in one go (``detect_many``: RetinaFace batches the windows of a frame's tracks) is asked once."""
    areas = [even_box(clip_box(area, frame.width, frame.height), frame.width, frame.height) for area, _ in searches]
    pictures = {
        index: detection_picture(frame, area, factor, detector.colour)
        for index, (area, (_, factor)) in enumerate(zip(areas, searches, strict=True))
        if area.width >= 16 and area.height >= 16
    }
    many = getattr(detector, "detect_many", None)
    if many is not None:
        answers = dict(zip(pictures, many(list(pictures.values())), strict=True))
    else:
        answers = {index: detector.detect(picture) for index, picture in pictures.items()}
    results: list[list[Detection]] = []
    for index, area in enumerate(areas):
        found = []
        if index in answers:
            back = area.width / pictures[index].shape[1]
            for detection in answers[index]:
                moved = detection.moved(back, area.left, area.top)
                box = clip_box(moved.box, frame.width, frame.height)
                if box.width > 0 and box.height > 0:
                    found.append(Detection(box, moved.score, moved.detector, moved.landmarks))
        results.append(found)
    return results


@dataclass(frozen=True)
class DetectorSpec:
    """What the detector process builds (picklable): the configured detector, one ONNX Runtime thread."""

    settings: Settings
    upsample: int  # HOG only


@dataclass(frozen=True)
class DetectRequest:
    seq: int
    clock: float
    block: str
    format: FrameFormat  # of the searched area, whose I420 planes fill the block
    left: int  # where the searched area sits in the frame
    top: int
    factor: float  # search a copy scaled by this


@dataclass(frozen=True)
class DetectResult:
    seq: int
    clock: float
    detections: list[Detection]  # frame coordinates
    cpu_s: float  # CPU time the detector process has used so far


@dataclass(frozen=True)
class DetectorReady:
    """The detector process has loaded its model and run it once: the first message on its results queue."""


def warm_up(detector: FaceDetector, pictures: list[tuple[int, int]]) -> None:
    """Search blank pictures of these (rows, cols) once. ONNX Runtime's first runs of a session set up its memory
    and threads; three cameras starting together paid for it on their first second of video, whose faces went
    unembedded (issue 21's benchmark: the tracks of the clip's first second missed under load)."""
    blanks = [np.zeros((rows, cols, 3) if detector.colour else (rows, cols), np.uint8) for rows, cols in pictures]
    many = getattr(detector, "detect_many", None)
    if many is not None:
        many(blanks)
    else:
        for blank in blanks:
            detector.detect(blank)


def detector_main(spec: DetectorSpec, requests: Any, results: Any) -> None:
    """The detector process: say it is ready, then answer requests until None arrives."""
    die_with_parent("openlfr-detect")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from openlfr.vision.engine import build_detector

    # The pipeline resizes the picture itself (by the request's factor): the detector searches it as given.
    detector = build_detector(spec.settings, upsample=spec.upsample, scale=1.0, threads=1)
    warm_up(detector, [(540, 960)])  # half a 1080p frame, the live search's usual size
    results.put(DetectorReady())
    blocks: dict[str, shared_memory.SharedMemory] = {}
    try:
        while True:
            request = requests.get()
            if request is None:
                break
            block = blocks.get(request.block)
            if block is None:
                for old in blocks.values():
                    old.close()
                blocks = {request.block: (block := shared_memory.SharedMemory(name=request.block))}
            fmt = request.format
            planes = np.ndarray((fmt.nbytes,), np.uint8, buffer=block.buf)
            area = YuvFrame(planes, fmt)
            found = [
                d.moved(1.0, request.left, request.top)
                for d in detect_in_area(detector, area, area.bounds(), request.factor)
            ]
            del area, planes
            results.put(DetectResult(request.seq, request.clock, found, time.process_time()))
    finally:
        for block in blocks.values():
            block.close()


class RemoteDetector:
    """The analysis process's handle on its detector process."""

    def __init__(self, requests: Any, results: Any) -> None:
        self.requests = requests
        self.results = results
        self.cpu_s = 0.0
        self._block: shared_memory.SharedMemory | None = None
        self._seq = 0
        self._in_flight: int | None = None

    def wait_ready(self, timeout_s: float) -> None:
        """Until the detector process has loaded and warmed its model (``DetectorReady``)."""
        try:
            message = self.results.get(timeout=timeout_s)
        except queue.Empty:
            raise RuntimeError(f"the detector process was not ready within {timeout_s:.0f} s") from None
        if not isinstance(message, DetectorReady):
            raise RuntimeError(f"the detector process said {type(message).__name__} before it was ready")

    def busy(self) -> bool:
        return self._in_flight is not None

    def submit(self, frame: YuvFrame, area: Box, clock: float, factor: float) -> None:
        """Search ``area`` of the frame at ``factor``; its planes are copied, so the frame may be reused."""
        if self.busy():
            raise RuntimeError("one detection at a time")
        area = even_box(clip_box(area, frame.width, frame.height), frame.width, frame.height)
        fmt = FrameFormat(area.width, area.height, frame.format.matrix, frame.format.full_range)
        nbytes = i420_size(area.width, area.height)
        if self._block is None or self._block.size < nbytes:
            self._release()
            self._block = shared_memory.SharedMemory(create=True, size=max(1, nbytes))
        target = YuvFrame(np.ndarray((nbytes,), np.uint8, buffer=self._block.buf), fmt)
        target.y[:] = frame.y[area.top : area.bottom, area.left : area.right]
        target.u[:] = frame.u[area.top // 2 : area.bottom // 2, area.left // 2 : area.right // 2]
        target.v[:] = frame.v[area.top // 2 : area.bottom // 2, area.left // 2 : area.right // 2]
        del target
        self._seq += 1
        self._in_flight = self._seq
        self.requests.put(DetectRequest(self._seq, clock, self._block.name, fmt, area.left, area.top, factor))

    def poll(self) -> tuple[float, list[Detection]] | None:
        """The detections of the request in flight, once they are ready: (clock of its frame, detections)."""
        if self._in_flight is None:
            return None
        try:
            result = self.results.get_nowait()
        except queue.Empty:
            return None
        self._in_flight = None
        self.cpu_s = result.cpu_s
        return result.clock, result.detections

    def _release(self) -> None:
        if self._block is not None:
            self._block.close()
            with contextlib.suppress(FileNotFoundError):
                self._block.unlink()
            self._block = None

    def close(self) -> None:
        self._release()
