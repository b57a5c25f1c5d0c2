"""What a camera's pipeline puts in an alert once a track's evidence names a listed person: the best sample's crop
as the probe, the (at most three) best looks that supported it, the candidates and the evidence, and when it was
seen. Only for a track that alerted: nothing here runs for a face that did not match."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from openlfr.alerts.record import AlertFound
from openlfr.clock import utc_now
from openlfr.stream.evidence import EvidenceRule, Verdict
from openlfr.stream.frames import clip_box, expand_box, shift_box
from openlfr.stream.second_look import SecondOpinion
from openlfr.stream.tracker import Sample, Track
from openlfr.vision.image_io import encode_jpeg
from openlfr.vision.types import Box

LOOKS_KEPT = 3


@dataclass(frozen=True)
class AlertContext:
    """What every alert of one camera's pipeline shares."""

    camera: str
    model_id: str
    rule: EvidenceRule
    second: SecondOpinion | None


@dataclass(frozen=True)
class Moment:
    clock: float  # the pipeline's clock at the frame
    arrival: float  # time.monotonic() when the frame arrived
    media_time: float  # seconds into the footage (recorded footage), 0 for a live camera


def probe_crop(rgb: np.ndarray, region: Box, box: Box, margin: float) -> np.ndarray:
    """The face with ``margin`` around it, cut out of ``rgb`` (the RGB copy of ``region`` of the frame)."""
    grown = expand_box(box, margin, region.right, region.bottom)
    local = clip_box(shift_box(grown, -region.left, -region.top), rgb.shape[1], rgb.shape[0])
    return np.ascontiguousarray(rgb[local.top : local.bottom, local.left : local.right]).copy()


def best_looks(samples: list[Sample], supporting: tuple[int, ...]) -> tuple[tuple[float, bytes], ...]:
    """The alert's looks for its decision page: the crops of the (at most three) best-quality samples that named
    the alerted person, best first. Only those: a sample that named nobody kept no crop in the first place."""
    named = sorted((samples[i] for i in supporting if samples[i].crop is not None), key=lambda s: -s.quality)
    return tuple((round(s.quality, 4), encode_jpeg(s.crop)) for s in named[:LOOKS_KEPT] if s.crop is not None)


def alert_of(context: AlertContext, track: Track, samples: list[Sample], verdict: Verdict, at: Moment) -> AlertFound:
    """The alert for ``track``, whose best supporting sample (``verdict.best``) kept its crop."""
    best = samples[verdict.best]
    assert best.crop is not None
    rule = context.rule
    lag = time.monotonic() - at.arrival
    return AlertFound(
        camera=context.camera,
        track_id=track.id,
        person_id=verdict.person_id,
        reference_id=best.candidates[0].reference_id,
        score=verdict.score,
        threshold=rule.threshold,
        candidates=[(c.person_id, c.reference_id, float(c.score)) for c in best.candidates],
        probe_jpeg=encode_jpeg(best.crop),
        probe_embedding=best.embedding,
        arrival=at.arrival,
        seen_at=utc_now() - timedelta(seconds=lag),
        clock=at.clock,
        media_time=at.media_time,
        model_id=context.model_id,
        looks=best_looks(samples, verdict.supporting),
        evidence={
            "samples": len(samples),
            "supporting": len(verdict.supporting),
            "k": rule.k,
            "n": rule.n,
            "track_age_ms": round((at.clock - track.first_clock) * 1000.0, 1),
            "fused": verdict.fused,
            **({"second_opinion": context.second.gallery.model_id} if context.second is not None else {}),
        },
    )
