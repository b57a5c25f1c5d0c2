"""Re-embedding a watchlist under the current model, and the second opinion's (``openlfr watchlist reembed``,
``POST /api/watchlists/{name}/reembed``): one use case for both doors.

Embeddings are per model and matching reads only the current model's, so a list enrolled under another model
is invisible until each photo has an embedding of the current one. Each photo's stored face picture is
embedded again (``openlfr.enrolment.reembed``) and kept as a new row of the current model beside the old
rows: those are harmless (never read by a matcher of another model) and make a switch back to the old model
work at once.

All or nothing per person: a person any of whose photos fails keeps only their old embeddings and is reported
with the reasons. Only people still listed are re-embedded (no new biometric template is made for an expired
entry, which is never searched again). The embeddings are computed first, with nothing written, then the new
rows and the one audit entry of the run go in together, in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload, undefer

from openlfr.clock import utc_now
from openlfr.enrolment.reembed import reembed_picture
from openlfr.errors import ModelError
from openlfr.services.context import Context
from openlfr.services.watchlists import existing
from openlfr.store.models import Person, ReferenceImage
from openlfr.vision.engine import FaceEngine, build_engine, model_id_for, second_engine

# Called after each person with (people done, people in all, the person's id).
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class RefusedPerson:
    person: str
    reasons: list[str]


@dataclass
class ReembedReport:
    watchlist: str
    model_id: str
    people: int = 0  # listed now (the ones looked at)
    reembedded: list[str] = field(default_factory=list)  # given embeddings of the model by this run
    up_to_date: list[str] = field(default_factory=list)  # every photo already had one
    refused: list[RefusedPerson] = field(default_factory=list)
    images_added: int = 0
    expired_skipped: int = 0
    # The second opinion's rows (OPENLFR_SECOND_OPINION), made from the same pictures; audited beside the report.
    second_model_id: str | None = None
    second_images_added: int = 0
    second_refused: list[RefusedPerson] = field(default_factory=list)  # kept the first model's rows only

    def as_dict(self) -> dict[str, Any]:
        return {
            "watchlist": self.watchlist,
            "model_id": self.model_id,
            "people": self.people,
            "reembedded": len(self.reembedded),
            "up_to_date": len(self.up_to_date),
            "refused": [{"person": r.person, "reasons": r.reasons} for r in self.refused],
            "images_added": self.images_added,
            "expired_skipped": self.expired_skipped,
        }


def reembed_watchlist(
    db: Session,
    ctx: Context,
    watchlist_name: str,
    *,
    engine: FaceEngine | None = None,
    now: datetime | None = None,
    on_start: Callable[[int], None] | None = None,
    on_progress: Progress | None = None,
) -> ReembedReport:
    """Give every listed person's photos an embedding of the current model (the stills profile, as enrolment)."""
    moment = now or utc_now()
    settings = ctx.settings
    watchlist = existing(db, watchlist_name)
    model_id = model_id_for(settings)
    engine = engine or build_engine(settings, stills=True)
    if engine.model_id != model_id:
        raise ModelError(f"the engine makes {engine.model_id} embeddings, the settings name {model_id}")
    # The second opinion's model too (OPENLFR_SECOND_OPINION), from the same stored pictures: a list enrolled
    # before it was on gets the references it compares with.
    second = engine.second or second_engine(engine, settings, stills=True)
    report = ReembedReport(watchlist_name, model_id)
    report.expired_skipped = int(
        db.scalar(
            sa.select(sa.func.count(Person.id)).where(
                Person.watchlist_id == watchlist.id, sa.not_(Person.listed_at(moment))
            )
        )
        or 0
    )
    person_ids = list(
        db.scalars(
            sa.select(Person.id)
            .where(Person.watchlist_id == watchlist.id, Person.listed_at(moment))
            .order_by(Person.reference_id)
        )
    )
    report.people = len(person_ids)
    if on_start:
        on_start(len(person_ids))
    new_rows: list[ReferenceImage] = []
    for done, person_id in enumerate(person_ids, start=1):
        # One person's pictures at a time: a large list's pictures are never all in memory.
        person = db.scalars(
            sa.select(Person)
            .where(Person.id == person_id)
            .options(selectinload(Person.images).options(undefer(ReferenceImage.face_jpeg)))
        ).one()
        rows, reasons = _person_rows(engine, person, model_id, ctx.actor, moment, settings.max_image_pixels)
        if reasons:
            report.refused.append(RefusedPerson(person.reference_id, reasons))
        elif rows:
            report.reembedded.append(person.reference_id)
            new_rows.extend(rows)
        else:
            report.up_to_date.append(person.reference_id)
        if second is not None and not reasons:
            # The second opinion's rows, all or nothing per person too; a person without them only turns the
            # second opinion off for the list (services/second_opinion.py), so they are reported apart.
            extra, failed = _person_rows(second, person, second.model_id, ctx.actor, moment, settings.max_image_pixels)
            if failed:
                report.second_refused.append(RefusedPerson(person.reference_id, failed))
            new_rows.extend(extra)
        if on_progress:
            on_progress(done, len(person_ids), person.reference_id)
    db.add_all(new_rows)
    db.flush()
    report.images_added = sum(1 for row in new_rows if row.model_id == model_id)
    details = report.as_dict()
    if second is not None:
        report.second_model_id = second.model_id
        report.second_images_added = len(new_rows) - report.images_added
        details["second_opinion"] = {
            "model_id": second.model_id,
            "images_added": report.second_images_added,
            "refused": [{"person": r.person, "reasons": r.reasons} for r in report.second_refused],
        }
    ctx.audit(db, "watchlist.reembed", f"watchlist:{watchlist_name}", details)
    return report


def _person_rows(
    engine: FaceEngine, person: Person, model_id: str, actor: str, now: datetime, max_pixels: int
) -> tuple[list[ReferenceImage], list[str]]:
    """The new rows for the person's photos without an embedding of ``model_id``, or every reason of failure."""
    done = {image.sha256 for image in person.images if image.model_id == model_id}
    todo: dict[str, ReferenceImage] = {}
    for image in person.images:  # ordered by id: the photo's first row is the one enrolment made
        if image.sha256 not in done:
            todo.setdefault(image.sha256, image)
    rows, reasons = [], []
    for image in todo.values():
        result = reembed_picture(engine, image.face_jpeg, max_pixels)
        if result.embedding is None:
            reasons.append(f"{image.source}: {result.reason}")
            continue
        rows.append(_row_like(image, result.embedding, model_id, actor, now))
    return ([], reasons) if reasons else (rows, [])


def _row_like(image: ReferenceImage, embedding: np.ndarray, model_id: str, actor: str, now: datetime) -> ReferenceImage:
    """The photo's enrolment record (the same face picture, box and quality) with the new model's embedding."""
    enrolled = image.column_values(without=("id", "model_id", "embedding", "added_by", "added_at"))
    return ReferenceImage(**enrolled, model_id=model_id, embedding=embedding, added_by=actor, added_at=now)
