"""Adapters between the server and the other stages' modules: the store's watchlists, the matcher's
calibration, the alerts table. The server depends on these few functions only, so a change elsewhere is
absorbed here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, undefer

from openlfr.governance.deployments import utc
from openlfr.settings import Settings
from openlfr.store.models import Person, ReferenceImage, Watchlist
from openlfr.store.watchlists import watchlist_summaries


@dataclass(frozen=True)
class ListedImage:
    image_id: int
    jpeg: bytes | None
    embedding: np.ndarray
    model_id: str


@dataclass(frozen=True)
class ListedPerson:
    ref: str
    display_name: str
    category: str
    reason: str
    images: list[ListedImage] = field(default_factory=list)


@dataclass(frozen=True)
class WatchlistSummary:
    name: str
    purpose: str
    people: int
    active_people: int


def watchlist_exists(db: Session, name: str) -> bool:
    return db.scalar(select(Watchlist.id).where(Watchlist.name == name)) is not None


def list_watchlists(db: Session, now: datetime) -> list[WatchlistSummary]:
    return [
        WatchlistSummary(w.name, w.purpose, w.active_people + w.expired_people, w.active_people)
        for w in watchlist_summaries(db, utc(now))
    ]


def active_people(db: Session, name: str, now: datetime) -> list[ListedPerson]:
    """Everyone on the watchlist who has not expired, with their reference images and embeddings."""
    people = db.scalars(
        select(Person)
        .join(Watchlist, Person.watchlist_id == Watchlist.id)
        .where(Watchlist.name == name, Person.listed_at(utc(now)))
        .options(selectinload(Person.images).options(undefer(ReferenceImage.face_jpeg)))
        .order_by(Person.reference_id)
    ).all()
    return [
        ListedPerson(
            ref=p.reference_id,
            display_name=p.display_name,
            category=p.category,
            reason=p.reason,
            images=[ListedImage(i.id, i.face_jpeg, np.asarray(i.embedding), i.model_id) for i in p.images],
        )
        for p in people
    ]


def resolve_threshold(
    settings: Settings, model_id: str, size: int, threshold: float | None, target_fpir: float | None
) -> tuple[float, str]:
    """The threshold a deployment runs at, and a sentence saying how it was chosen (for the authoriser)."""
    from openlfr.watchlist.calibration import CalibrationError, choose_threshold, load_calibration

    try:
        table = load_calibration(model_id, data_dir=settings.data_dir)
        choice = choose_threshold(table, size, target_fpir=target_fpir, threshold=threshold)
    except CalibrationError:
        if threshold is None:
            raise
        return float(threshold), f"threshold {threshold:.4f} given (no calibration table for {model_id})"
    return choice.threshold, choice.describe()
