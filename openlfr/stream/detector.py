"""Whole-picture detection in a process of its own, beside a camera's analysis process.

On a live camera the analysis must not stop for the 150 ms a 1080p whole-picture HOG detection takes: while a
second core searches the whole picture, the analysis keeps following its tracks frame by frame, and takes the
detections in when they arrive (``CameraPipeline._adopt``: faces it already follows are ignored, new ones are
found again in the current frame around where they were). One detection is in flight at a time; the luma plane
crosses in a shared-memory block owned by the analysis process.
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

from openlfr.vision.types import Box, Detection


@dataclass(frozen=True)
class DetectRequest:
    seq: int
    clock: float
    block: str
    width: int
    height: int
    left: int  # where the searched area sits in the frame
    top: int
    factor: float  # search a copy scaled by this


@dataclass(frozen=True)
class DetectResult:
    seq: int
    clock: float
    boxes: list[tuple[int, int, int, int, float]]  # frame coordinates, detector score
    cpu_s: float  # CPU time the detector process has used so far


def detector_main(upsample: int, requests: Any, results: Any) -> None:
    """The detector process: answer requests until None arrives."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from openlfr.stream.pipeline import resize_gray
    from openlfr.vision.dlib_backend import HogDetector

    detector = HogDetector(upsample=upsample)
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
            gray = np.ndarray((request.height, request.width), np.uint8, buffer=block.buf)
            image = resize_gray(np.ascontiguousarray(gray), request.factor)
            boxes = []
            for found in detector.detect(image):
                b = found.box
                boxes.append(
                    (
                        round(b.left / request.factor) + request.left,
                        round(b.top / request.factor) + request.top,
                        round(b.right / request.factor) + request.left,
                        round(b.bottom / request.factor) + request.top,
                        found.score,
                    )
                )
            del gray
            results.put(DetectResult(request.seq, request.clock, boxes, time.process_time()))
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

    def busy(self) -> bool:
        return self._in_flight is not None

    def submit(self, gray: np.ndarray, clock: float, left: int, top: int, factor: float) -> None:
        if self.busy():
            raise RuntimeError("one detection at a time")
        height, width = gray.shape
        if self._block is None or self._block.size < gray.nbytes:
            self._release()
            self._block = shared_memory.SharedMemory(create=True, size=max(1, gray.nbytes))
        target = np.ndarray((height, width), np.uint8, buffer=self._block.buf)
        target[:] = gray
        del target
        self._seq += 1
        self._in_flight = self._seq
        self.requests.put(DetectRequest(self._seq, clock, self._block.name, width, height, left, top, factor))

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
        return result.clock, [Detection(Box(*box[:4]), box[4], "hog") for box in result.boxes]

    def _release(self) -> None:
        if self._block is not None:
            self._block.close()
            with contextlib.suppress(FileNotFoundError):
                self._block.unlink()
            self._block = None

    def close(self) -> None:
        self._release()
