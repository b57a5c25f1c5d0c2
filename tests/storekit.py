"""Rows for tests that need watchlist references in the store without running enrolment."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from openlfr.alerts.record import AlertFound
from openlfr.store.models import Person, ReferenceImage


def reference_image_row(embedding: np.ndarray, model_id: str, sha256: str, **overrides: Any) -> ReferenceImage:
    """A reference image with a plausible quality record; pass ``person=...`` or append it to one."""
    values: dict[str, Any] = {
        "source": "still.jpg",
        "sha256": sha256,
        "face_jpeg": b"\xff\xd8\xff\xe0fake-jpeg",
        "box_left": 0,
        "box_top": 0,
        "box_right": 10,
        "box_bottom": 10,
        "detector": "hog",
        "detector_score": 1.0,
        "face_height_px": 100,
        "inter_eye_px": 40.0,
        "sharpness": 50.0,
        "yaw_deg": 0.0,
        "pitch_deg": 0.0,
        "roll_deg": 0.0,
        "model_id": model_id,
        "embedding": embedding,
        "added_by": "test",
        "added_at": datetime.now(UTC),
    }
    values.update(overrides)
    return ReferenceImage(**values)


def sighting(
    person: str = "P1",
    *,
    probe: bytes = b"\xff\xd8probe",
    track_id: int = 7,
    seen_at: datetime | None = None,
    model_id: str = "m",
) -> AlertFound:
    """An alert as a camera's pipeline hands it on: ``person`` seen on camera ``entrance`` (score 0.9 at 0.6)."""
    return AlertFound(
        camera="entrance",
        track_id=track_id,
        person_id=person,
        reference_id=3,
        score=0.9,
        threshold=0.6,
        candidates=[(person, 3, 0.9)],
        probe_jpeg=probe,
        arrival=time.monotonic(),
        seen_at=seen_at or datetime.now(UTC),
        clock=12.5,
        media_time=12.5,
        model_id=model_id,
        evidence={"samples": 3, "supporting": 2},
    )


def person_row(reference_id: str, **overrides: Any) -> Person:
    """A listed person, added now and searched for a day, under their reference as name; pass
    ``watchlist=...`` or append it to one, and any column to differ."""
    now = overrides.get("added_at") or datetime.now(UTC)
    values: dict[str, Any] = {
        "reference_id": reference_id,
        "display_name": reference_id,
        "category": "wanted_offence",
        "reason": "test",
        "legal_basis": "test",
        "added_by": "admin",
        "added_at": now,
        "expires_at": now + timedelta(days=1),
    }
    values.update(overrides)
    return Person(**values)
