"""An alert in its two shapes: as the live pipeline raises it (``AlertFound``), and as committed to the database
and announced (``AlertRecord``, the record every sink receives)."""

from __future__ import annotations

import base64
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class AlertFound:
    """An alert as the pipeline raises it: everything but what the database adds (id, commit time)."""

    camera: str
    track_id: int
    person_id: Hashable
    reference_id: Hashable
    score: float
    threshold: float
    candidates: list[tuple[Hashable, Hashable, float]]  # (person, reference, score), best first
    probe_jpeg: bytes
    arrival: float  # time.monotonic() when the deciding frame arrived
    seen_at: datetime  # the same moment, on the wall clock (UTC)
    clock: float
    media_time: float
    model_id: str
    evidence: dict[str, float | int]


@dataclass(frozen=True)
class AlertRecord:
    id: int  # the database id: the console and the review use it
    uid: str  # a random id for the outside world (webhook idempotency key, MQTT)
    created_at: datetime  # committed at (UTC)
    seen_at: datetime  # the deciding frame arrived at (UTC)
    camera: str
    track_id: int
    person_ref: str
    person_name: str
    reference_image_id: int | None
    score: float
    threshold: float
    model_id: str
    watchlist_name: str
    candidates: list[dict[str, Any]] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    probe_jpeg: bytes | None = field(default=None, repr=False)
    latency_ms: float | None = None  # deciding frame -> committed
    media_time_s: float | None = None
    deployment_id: int | None = None

    def json_line(self) -> dict[str, Any]:
        """The `openlfr scan --json` alert line (these keys exactly; the interface of issue 4)."""
        return {
            "type": "alert",
            "person": self.person_ref,
            "camera": self.camera,
            "track": self.track_id,
            "score": round(self.score, 4),
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
        }

    def document(self, include_probe: bool = False) -> dict[str, Any]:
        """The full alert for webhooks and MQTT; the probe crop (base64 JPEG) only when asked for."""
        body: dict[str, Any] = {
            "id": self.id,
            "uid": self.uid,
            "created_at": self.created_at.isoformat(),
            "seen_at": self.seen_at.isoformat(),
            "camera": self.camera,
            "track": self.track_id,
            "person": self.person_ref,
            "person_name": self.person_name,
            "reference_image_id": self.reference_image_id,
            "score": round(self.score, 4),
            "threshold": round(self.threshold, 4),
            "model_id": self.model_id,
            "watchlist": self.watchlist_name,
            "candidates": self.candidates,
            "evidence": self.evidence,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "media_time_s": self.media_time_s,
            "deployment_id": self.deployment_id,
        }
        if include_probe and self.probe_jpeg is not None:
            body["probe_jpeg_base64"] = base64.b64encode(self.probe_jpeg).decode("ascii")
        return body
