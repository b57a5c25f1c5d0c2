"""An alert in its two shapes: as the live pipeline raises it (``AlertFound``), and as committed to the database
and announced (``AlertRecord``, the record every sink receives)."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np


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
    evidence: dict[str, float | int | str]  # "second_opinion": the model id whose fused score decided
    # Up to three crops of the track's best looks that named this person: (quality, JPEG), best first. Written
    # with the alert, under the probe's rules (``openlfr.store.alert_models.AlertLook``); never sent to a sink.
    looks: tuple[tuple[float, bytes], ...] = field(default=(), repr=False)
    # The embedding of the probe (the sample whose crop is ``probe_jpeg``): stored with the alert under the probe's
    # rules, so that an operator's "not a match" can mark the next alert of the same face (``seen_rejected``).
    probe_embedding: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class AlertRecord:
    id: int  # the database id: the console and the review use it
    uid: str  # a random id for the outside world: the key of its events in the outbox (Idempotency-Key)
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
    seen_rejected_alert_id: int | None = None  # "likely the person you rejected" in that alert (seen_rejected.py)
    seen_rejected_score: float | None = None

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
