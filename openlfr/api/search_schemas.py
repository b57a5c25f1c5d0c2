"""The answer of a photo search (``POST /api/search``): the same object ``openlfr search --json`` prints."""

from __future__ import annotations

from openlfr.api.schemas import Out


class SearchCandidateOut(Out):
    rank: int
    person: str
    name: str
    category: str
    score: float
    fmr: float | None  # the calibrated false-match rate of the score; null without a calibration table
    fmr_extrapolated: bool
    fpir: float | None
    reference_image_id: int


class SearchProbeOut(Out):
    face: int  # numbered from the left
    faces_found: int
    box: list[int]
    detector_score: float
    quality: dict[str, float]


class PhotoSearchOut(Out):
    """A photo search's answer, the same object ``openlfr search --json`` prints."""

    watchlist: str
    model_id: str
    searched_at: str  # ISO 8601, UTC
    searched_by: str
    references_searched: int
    people_searched: int
    probe: SearchProbeOut
    candidates: list[SearchCandidateOut]
    calibration: str
    investigation: str | None
    record_id: int | None
    audit_seq: int | None
