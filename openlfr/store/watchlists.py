"""Reading watchlists: look-ups by name, and the active reference embeddings that matching searches.

``active_references`` is the one door between stored watchlists and search: it returns only people whose
``expires_at`` is still ahead, and only embeddings of the model asked for.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload, undefer

from openlfr.store.db import StoreError, record_from
from openlfr.store.models import Person, ReferenceImage, Watchlist


@dataclass(frozen=True)
class ListedImage:
    image_id: int
    jpeg: bytes | None = field(repr=False)
    embedding: np.ndarray = field(repr=False)
    model_id: str


@dataclass(frozen=True)
class ListedPerson:
    """A person on a watchlist as matching, duplicate checks and snapshots see them (the one definition)."""

    id: int
    reference_id: str
    display_name: str
    category: str
    expires_at: datetime
    reason: str = ""
    images: list[ListedImage] = field(default_factory=list)  # filled by ``active_people`` only


@dataclass
class ActiveReferences:
    """The searchable part of a watchlist at one moment, for one embedding model.

    Row ``i`` of ``embeddings`` is reference image ``image_ids[i]`` of person ``person_ids[i]`` (``Person.id``,
    described in ``people``).
    """

    model_id: str
    embeddings: np.ndarray = field(repr=False)  # (n, dimension) float32, unit rows
    image_ids: list[int]
    person_ids: list[int]
    people: dict[int, ListedPerson]

    @property
    def size(self) -> int:
        return len(self.image_ids)


def get_watchlist(session: Session, name: str) -> Watchlist:
    watchlist = session.scalars(sa.select(Watchlist).where(Watchlist.name == name)).one_or_none()
    if watchlist is None:
        raise StoreError(f"no watchlist named {name!r} (`openlfr watchlist list` shows them)")
    return watchlist


def find_person(session: Session, watchlist: Watchlist, reference_id: str) -> Person | None:
    return session.scalars(
        sa.select(Person).where(Person.watchlist_id == watchlist.id, Person.reference_id == reference_id)
    ).one_or_none()


def get_person(session: Session, watchlist: Watchlist, reference_id: str) -> Person:
    person = find_person(session, watchlist, reference_id)
    if person is None:
        raise StoreError(f"nobody with id {reference_id!r} on watchlist {watchlist.name!r}")
    return person


def active_references(session: Session, watchlist_id: int, model_id: str, now: datetime) -> ActiveReferences:
    """Embeddings of ``model_id`` of the people on the watchlist who have not expired at ``now``."""
    rows = session.execute(
        sa.select(
            ReferenceImage.id,
            ReferenceImage.embedding,
            Person.id,
            Person.reference_id,
            Person.display_name,
            Person.category,
            Person.expires_at,
        )
        .join(Person, ReferenceImage.person_id == Person.id)
        .where(Person.watchlist_id == watchlist_id, Person.listed_at(now), ReferenceImage.model_id == model_id)
        .order_by(ReferenceImage.id)
    ).all()
    people = {
        row[2]: ListedPerson(id=row[2], reference_id=row[3], display_name=row[4], category=row[5], expires_at=row[6])
        for row in rows
    }
    embeddings = np.stack([row[1] for row in rows]).astype(np.float32) if rows else np.zeros((0, 0), np.float32)
    return ActiveReferences(
        model_id=model_id,
        embeddings=embeddings,
        image_ids=[row[0] for row in rows],
        person_ids=[row[2] for row in rows],
        people=people,
    )


@dataclass(frozen=True)
class WatchlistSummary:
    name: str
    purpose: str
    created_by: str
    created_at: datetime
    active_people: int
    expired_people: int
    images: int
    people: int  # active and expired


def watchlist_exists(session: Session, name: str) -> bool:
    return session.scalar(sa.select(Watchlist.id).where(Watchlist.name == name)) is not None


def active_people(session: Session, name: str, now: datetime, model_id: str | None = None) -> list[ListedPerson]:
    """Everyone on the named watchlist who has not expired, with their reference images and embeddings (only
    those of ``model_id`` when given: a person with none of that model comes back with no images)."""
    people = session.scalars(
        sa.select(Person)
        .join(Watchlist, Person.watchlist_id == Watchlist.id)
        .where(Watchlist.name == name, Person.listed_at(now))
        .options(selectinload(Person.images).options(undefer(ReferenceImage.face_jpeg)))
        .order_by(Person.reference_id)
    ).all()
    return [
        record_from(
            ListedPerson,
            p,
            images=[
                ListedImage(i.id, i.face_jpeg, np.asarray(i.embedding), i.model_id)
                for i in p.images
                if model_id is None or i.model_id == model_id
            ],
        )
        for p in people
    ]


@functools.cache
def _summaries_query() -> sa.Select[Watchlist, int | None, int | None, int | None]:
    """Built once (a query of subqueries costs more to build than to run), ``now`` bound at each run."""
    now = sa.bindparam("now", type_=Person.expires_at.type)
    active = sa.func.sum(sa.case((Person.listed_at(now), 1), else_=0))
    expired = sa.func.sum(sa.case((sa.not_(Person.listed_at(now)), 1), else_=0))
    people = (
        sa.select(Person.watchlist_id, active.label("active"), expired.label("expired"))
        .group_by(Person.watchlist_id)
        .subquery()
    )
    # Photos, not rows: a re-embedded photo has one row per model.
    photos = (
        sa.select(Person.watchlist_id, ReferenceImage.person_id, ReferenceImage.sha256)
        .join(ReferenceImage, ReferenceImage.person_id == Person.id)
        .distinct()
        .subquery()
    )
    images = (
        sa.select(photos.c.watchlist_id, sa.func.count().label("images")).group_by(photos.c.watchlist_id).subquery()
    )
    return (
        sa.select(Watchlist, people.c.active, people.c.expired, images.c.images)
        .outerjoin(people, people.c.watchlist_id == Watchlist.id)
        .outerjoin(images, images.c.watchlist_id == Watchlist.id)
        .order_by(Watchlist.name)
    )


def watchlist_summaries(session: Session, now: datetime) -> list[WatchlistSummary]:
    rows = session.execute(_summaries_query(), {"now": now}).all()
    return [
        record_from(
            WatchlistSummary,
            w,
            active_people=int(a or 0),
            expired_people=int(e or 0),
            images=int(i or 0),
            people=int(a or 0) + int(e or 0),
        )
        for w, a, e, i in rows
    ]
