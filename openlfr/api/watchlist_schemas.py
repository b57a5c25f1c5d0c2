"""The bodies of the routes that show a watchlist's people and bring a listing's expiry forward."""

from __future__ import annotations

from datetime import datetime

from pydantic import ConfigDict

from openlfr.api.schemas import Out, Strict, Text5000, UtcTime


class ExpireIn(Strict):
    """Stop searching for a person at ``at`` (now when left out), never later than their listing ends now."""

    reason: Text5000
    at: UtcTime | None = None

    model_config = ConfigDict(extra="forbid", strict=False, str_strip_whitespace=True)  # the time as an ISO string


class QualityOut(Out):
    face_height_px: int
    inter_eye_px: float
    sharpness: float
    yaw_deg: float
    pitch_deg: float
    roll_deg: float


class PhotosOut(Out):
    """A person's photos: how many, and the weakest of each quality measure over them (yaw, pitch and roll as the
    largest turn either way)."""

    photos: int
    weakest: QualityOut


class ListedPersonOut(Out):
    person: str
    name: str
    category: str
    reason: str
    legal_basis: str
    added_by: str
    added_at: datetime
    expires_at: datetime
    active: bool  # still searched now
    photos: PhotosOut | None


class PeoplePageOut(Out):
    """People of a watchlist whose id or name contains ``q``, ``limit`` of them from ``offset``, of ``total``."""

    watchlist: str
    q: str
    offset: int
    total: int
    people: list[ListedPersonOut]


class PhotoOut(Out):
    """One photo of a person (its face picture: ``.../photos/{id}.jpg``, administrators only)."""

    id: int
    source: str
    model_id: str
    added_by: str
    added_at: datetime
    quality: QualityOut


class PersonOut(ListedPersonOut):
    watchlist: str
    images: list[PhotoOut]


class ExpiredOut(Out):
    person: str
    expires_at: datetime
