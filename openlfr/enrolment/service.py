"""Watchlist operations on the store: create, enrol, remove, expire. Each runs inside the caller's session,
so a refusal or an error part-way rolls the whole operation back (``Store.session`` does that).

Enrolment is all or nothing per person: every photo must pass the quality gate, none may repeat a file
already enrolled for them, and none may look like a *different* active person on the same list (a duplicate
under another id) unless the operator says ``allow_duplicate`` after checking.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from openlfr.enrolment.photos import PhotoResult
from openlfr.errors import EnrolmentRefused, OpenLFRError
from openlfr.store.db import StoreError
from openlfr.store.models import CATEGORY_VALUES, Person, ReferenceImage, Watchlist
from openlfr.store.watchlists import ActiveReferences, ListedPerson, active_references, find_person
from openlfr.text import escaped, visible_text
from openlfr.watchlist.score import match_score

WATCHLIST_NAME = re.compile(r"^[\w][\w .:@+-]{0,99}$")


@dataclass(frozen=True)
class PersonDetails:
    """What the operator says about a person. ``display_name`` and ``category`` are needed for a new person;
    for someone already listed they may be left out (None) and must otherwise agree with the record."""

    reference_id: str
    display_name: str | None = None
    category: str | None = None
    reason: str = ""
    legal_basis: str = ""
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Duplicate:
    person: ListedPerson
    score: float


class DuplicateIndex:
    """The active references of one watchlist and model, to spot a new photo of someone already listed.

    Kept in memory across a folder import (and extended as people are enrolled) so that each person costs one
    matrix product rather than one database read of the whole list.
    """

    def __init__(self, references: ActiveReferences) -> None:
        self.model_id = references.model_id
        dimension = references.embeddings.shape[1] if references.size else 0
        self._vectors = references.embeddings.reshape(references.size, dimension)
        self._owners = np.asarray(references.person_ids, dtype=np.int64)
        self._people = dict(references.people)

    @classmethod
    def load(cls, session: Session, watchlist: Watchlist, model_id: str, now: datetime) -> DuplicateIndex:
        return cls(active_references(session, watchlist.id, model_id, now))

    def best_other(self, embedding: np.ndarray, exclude_person: int | None) -> Duplicate | None:
        """The most similar listed person other than ``exclude_person``, with the match score."""
        if len(self._vectors) == 0:
            return None
        cosines = self._vectors @ embedding.astype(np.float32)
        if exclude_person is not None:
            cosines = np.where(self._owners == exclude_person, -np.inf, cosines)
        best = int(np.argmax(cosines))
        if not np.isfinite(cosines[best]):
            return None
        score = float(match_score(float(cosines[best]), self.model_id))
        return Duplicate(self._people[int(self._owners[best])], score)

    def add(self, person: ListedPerson, embeddings: np.ndarray) -> None:
        rows = embeddings.astype(np.float32).reshape(len(embeddings), -1)
        self._vectors = rows if len(self._vectors) == 0 else np.concatenate([self._vectors, rows])
        self._owners = np.concatenate([self._owners, np.full(len(rows), person.id, np.int64)])
        self._people[person.id] = person


def check_text(label: str, value: str, max_chars: int, *, names: bool = False) -> str:
    """``value`` stripped, or a refusal naming ``label``: empty, too long, or holding a character not shown as
    itself (``openlfr.text.visible_text``; ``names``: a display name, which may hold the joiners of some scripts)."""
    value = value.strip()
    if not value:
        raise OpenLFRError(f"{label} is empty")
    if len(value) > max_chars:
        raise OpenLFRError(f"{label} is longer than {max_chars} characters")
    return visible_text(value, label, names=names)


def check_reference_id(value: str) -> str:
    """A person's id as it is stored, or ``EnrolmentRefused`` (quoting the id escaped, so it cannot turn round)."""
    try:
        return check_text("the person's id", value, 100)
    except OpenLFRError as exc:
        raise EnrolmentRefused(escaped(value.strip()[:100]) or "(no id)", [("", str(exc))]) from None


def create_watchlist(session: Session, name: str, purpose: str, actor: str, now: datetime) -> Watchlist:
    visible_text(name, "the watchlist name")
    visible_text(purpose, "the watchlist's purpose", lines=True)
    if not WATCHLIST_NAME.match(name):
        raise OpenLFRError(
            f"{name!r} is not a usable watchlist name: 1-100 letters, digits, spaces or . : @ + - _, "
            "starting with a letter or digit"
        )
    if session.scalars(sa.select(Watchlist.id).where(Watchlist.name == name)).first() is not None:
        raise StoreError(f"a watchlist named {name!r} already exists")
    watchlist = Watchlist(name=name, purpose=purpose.strip(), created_by=actor, created_at=now)
    session.add(watchlist)
    session.flush()
    return watchlist


def enrol(
    session: Session,
    watchlist: Watchlist,
    details: PersonDetails,
    photos: Sequence[PhotoResult],
    *,
    actor: str,
    now: datetime,
    default_expiry: datetime,
    duplicate_score: float,
    allow_duplicate: bool = False,
    duplicates: DuplicateIndex | None = None,
) -> Person:
    """Put a person (or more photos of someone already listed) on the watchlist, or raise EnrolmentRefused."""
    reference_id = check_reference_id(details.reference_id)
    refused = [(photo.source, photo.reason or "refused") for photo in photos if not photo.accepted]
    if refused:
        raise EnrolmentRefused(reference_id, refused)
    if not photos:
        raise EnrolmentRefused(reference_id, [("", "no photos given")])
    faces = [photo.face for photo in photos if photo.face is not None]
    model_ids = {face.model_id for face in faces}
    if len(model_ids) != 1:
        raise EnrolmentRefused(reference_id, [("", f"photos embedded by different models: {sorted(model_ids)}")])
    (model_id,) = model_ids

    person = find_person(session, watchlist, reference_id)
    if person is None:
        person = _new_person(watchlist, details, reference_id, actor, now, default_expiry)
    else:
        _check_agrees(person, details, now)

    problems: list[tuple[str, str]] = []
    seen = {image.sha256: image.source for image in person.images}
    for photo in photos:
        if photo.sha256 in seen:
            problems.append((photo.source, f"the same file as {seen[photo.sha256]}, already given for {reference_id}"))
        seen[photo.sha256] = photo.source
    if duplicates is None:
        duplicates = DuplicateIndex.load(session, watchlist, model_id, now)
    elif duplicates.model_id != model_id:
        raise ValueError("the duplicate index was built for another model")
    if not allow_duplicate:
        for photo, face in zip(photos, faces, strict=True):
            found = duplicates.best_other(face.embedding, person.id)
            if found is not None and found.score >= duplicate_score:
                other = found.person
                problems.append(
                    (
                        photo.source,
                        f"looks like {other.reference_id} ({other.display_name}), already on the list "
                        f"(match score {found.score:.2f} >= {duplicate_score:.2f}); a duplicate under another id? "
                        "Check, and use --allow-duplicate if they are different people",
                    )
                )
    if problems:
        raise EnrolmentRefused(reference_id, problems)

    for photo, face in zip(photos, faces, strict=True):
        person.images.append(
            ReferenceImage.of_face(face, source=photo.source[:500], sha256=photo.sha256, added_by=actor, added_at=now)
        )
        # The second opinion's embedding of the same photo: a row of its model, as `watchlist reembed` adds.
        for second_model, second_embedding in face.second_embeddings.items():
            row = ReferenceImage.of_face(
                face, source=photo.source[:500], sha256=photo.sha256, added_by=actor, added_at=now
            )
            row.model_id, row.embedding = second_model, second_embedding
            person.images.append(row)
    session.add(person)
    try:
        session.flush()
    except sa.exc.IntegrityError as exc:
        raise EnrolmentRefused(reference_id, [("", "changed by someone else at the same time; try again")]) from exc
    duplicates.add(
        ListedPerson(person.id, person.reference_id, person.display_name, person.category, person.expires_at),
        np.stack([face.embedding for face in faces]),
    )
    return person


def _new_person(
    watchlist: Watchlist, details: PersonDetails, reference_id: str, actor: str, now: datetime, default_expiry: datetime
) -> Person:
    if details.display_name is None:
        raise EnrolmentRefused(reference_id, [("", "a new person needs a display name (--name)")])
    if details.category is None:
        raise EnrolmentRefused(reference_id, [("", f"a new person needs a category (--category {_categories()})")])
    if details.category not in CATEGORY_VALUES:
        raise EnrolmentRefused(reference_id, [("", f"unknown category {details.category!r}: one of {_categories()}")])
    try:
        display_name = check_text("the display name", details.display_name, 200, names=True)
        visible_text(details.reason, "the reason for listing", lines=True)
        visible_text(details.legal_basis, "the legal basis", lines=True)
    except OpenLFRError as exc:
        raise EnrolmentRefused(reference_id, [("", str(exc))]) from None
    expires_at = details.expires_at or default_expiry
    if expires_at <= now:
        raise EnrolmentRefused(reference_id, [("", f"the expiry {expires_at:%Y-%m-%d %H:%M} UTC has already passed")])
    # Linked by id, not by relationship, so the new person joins the session only when every check passed.
    return Person(
        watchlist_id=watchlist.id,
        reference_id=reference_id,
        display_name=display_name,
        category=details.category,
        reason=details.reason.strip(),
        legal_basis=details.legal_basis.strip(),
        added_by=actor,
        added_at=now,
        expires_at=expires_at,
    )


def _check_agrees(person: Person, details: PersonDetails, now: datetime) -> None:
    if not person.is_active(now):
        raise EnrolmentRefused(
            person.reference_id,
            [("", "already on this list but expired; remove them first to list them again")],
        )
    differences = []
    if details.display_name is not None and details.display_name.strip() != person.display_name:
        differences.append(f"name {person.display_name!r}")
    if details.category is not None and details.category != person.category:
        differences.append(f"category {person.category}")
    if details.expires_at is not None and details.expires_at != person.expires_at:
        differences.append(f"expiry {person.expires_at:%Y-%m-%d %H:%M} UTC")
    if differences:
        raise EnrolmentRefused(
            person.reference_id,
            [("", f"already listed with {', '.join(differences)}; leave those out to add photos, or remove first")],
        )


def _categories() -> str:
    return "|".join(CATEGORY_VALUES)


def remove_person(session: Session, watchlist: Watchlist, reference_id: str) -> int:
    """Delete a person with their photos and embeddings; returns how many photos went with them."""
    person = find_person(session, watchlist, reference_id)
    if person is None:
        raise StoreError(f"nobody with id {reference_id!r} on watchlist {watchlist.name!r}")
    count = len({image.sha256 for image in person.images})  # photos, not rows: a re-embedded one has a row per model
    session.delete(person)
    session.flush()
    return count


def remove_watchlist(session: Session, watchlist: Watchlist) -> None:
    session.delete(watchlist)
    session.flush()


def expire(session: Session, watchlist: Watchlist, reference_id: str | None, at: datetime) -> int:
    """Bring expiry forward to ``at`` (never later than it was). Returns how many people changed."""
    query = sa.select(Person).where(Person.watchlist_id == watchlist.id)
    if reference_id is not None:
        query = query.where(Person.reference_id == reference_id)
    people = session.scalars(query).all()
    if reference_id is not None and not people:
        raise StoreError(f"nobody with id {reference_id!r} on watchlist {watchlist.name!r}")
    changed = 0
    for person in people:
        if person.expires_at > at:
            person.expires_at = at
            changed += 1
    session.flush()
    return changed
