"""Reading a watchlist's people a page at a time, as the console and the API show them: found by part of their id
or name, each with a summary of their photos' quality; one person's photos; one face picture.

A photo is a file, not a row: a re-embedded photo has a row per model, and only its first row (the lowest id)
stands for it here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from openlfr.store.models import Person, ReferenceImage
from openlfr.vision.types import Quality


@dataclass(frozen=True)
class PhotoSummary:
    """A person's photos: how many, the first one's row, and the weakest of each quality measure over them."""

    photos: int
    first_image_id: int
    weakest: Quality


@dataclass(frozen=True)
class PersonRow:
    reference_id: str
    display_name: str
    category: str
    reason: str
    legal_basis: str
    added_by: str
    added_at: datetime
    expires_at: datetime
    photos: PhotoSummary | None  # None: no photo (cannot be matched)


@dataclass(frozen=True)
class PeoplePage:
    total: int  # everyone the query finds
    offset: int
    people: list[PersonRow]


def _like(query: str) -> str:
    """``query`` as a LIKE pattern for 'contains', its own ``%``, ``_`` and ``\\`` taken literally."""
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _first_rows() -> sa.Subquery:
    """The first row of each photo (per person and file)."""
    return (
        sa.select(sa.func.min(ReferenceImage.id).label("id"))
        .group_by(ReferenceImage.person_id, ReferenceImage.sha256)
        .subquery()
    )


def _summaries(session: Session, person_ids: list[int]) -> dict[int, PhotoSummary]:
    if not person_ids:
        return {}
    first = _first_rows()
    rows = session.execute(
        sa.select(
            ReferenceImage.person_id,
            sa.func.count(),
            sa.func.min(ReferenceImage.id),
            sa.func.min(ReferenceImage.face_height_px),
            sa.func.min(ReferenceImage.inter_eye_px),
            sa.func.min(ReferenceImage.sharpness),
            sa.func.max(sa.func.abs(ReferenceImage.yaw_deg)),
            sa.func.max(sa.func.abs(ReferenceImage.pitch_deg)),
            sa.func.max(sa.func.abs(ReferenceImage.roll_deg)),
        )
        .join(first, first.c.id == ReferenceImage.id)
        .where(ReferenceImage.person_id.in_(person_ids))
        .group_by(ReferenceImage.person_id)
    ).all()
    return {
        person: PhotoSummary(
            photos=int(count),
            first_image_id=int(first_id),
            weakest=Quality(int(height), float(eyes), float(sharp), float(yaw), float(pitch), float(roll)),
        )
        for person, count, first_id, height, eyes, sharp, yaw, pitch, roll in rows
    }


def people_page(session: Session, watchlist_id: int, query: str, offset: int, limit: int) -> PeoplePage:
    """The people of a watchlist whose id or name contains ``query`` (any case; everyone when empty), ordered by
    id, ``limit`` of them from ``offset``."""
    where = [Person.watchlist_id == watchlist_id]
    if query:
        pattern = _like(query.lower())
        where.append(
            sa.or_(
                sa.func.lower(Person.reference_id).like(pattern, escape="\\"),
                sa.func.lower(Person.display_name).like(pattern, escape="\\"),
            )
        )
    total = int(session.scalar(sa.select(sa.func.count()).select_from(Person).where(*where)) or 0)
    people = session.scalars(
        sa.select(Person).where(*where).order_by(Person.reference_id).offset(offset).limit(limit)
    ).all()
    photos = _summaries(session, [p.id for p in people])
    return PeoplePage(total=total, offset=offset, people=[_row(p, photos.get(p.id)) for p in people])


def _row(person: Person, photos: PhotoSummary | None) -> PersonRow:
    return PersonRow(
        reference_id=person.reference_id,
        display_name=person.display_name,
        category=person.category,
        reason=person.reason,
        legal_basis=person.legal_basis,
        added_by=person.added_by,
        added_at=person.added_at,
        expires_at=person.expires_at,
        photos=photos,
    )


def person_row(session: Session, person: Person) -> PersonRow:
    return _row(person, _summaries(session, [person.id]).get(person.id))


def person_photos(session: Session, person_id: int) -> list[ReferenceImage]:
    """One row per photo of the person (its first), oldest first, without the face pictures themselves."""
    first = _first_rows()
    return list(
        session.scalars(
            sa.select(ReferenceImage)
            .join(first, first.c.id == ReferenceImage.id)
            .where(ReferenceImage.person_id == person_id)
            .order_by(ReferenceImage.id)
        )
    )


def face_picture(session: Session, person_id: int, image_id: int) -> bytes | None:
    """The face picture of the person's reference image ``image_id``; None when it is not theirs."""
    data: bytes | None = session.scalar(
        sa.select(ReferenceImage.face_jpeg).where(ReferenceImage.id == image_id, ReferenceImage.person_id == person_id)
    )
    return data
