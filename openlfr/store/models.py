"""The watchlist tables: a watchlist, the people on it, and each person's reference images.

A reference image row holds what enrolment keeps of one photo: a JPEG of the face region only (never the
rest of the photo, which may show bystanders), where the face was, its quality record, and its embedding
with the id of the model that made it. An embedding is only ever compared with embeddings of the same model.
Every person has an ``expires_at``; from that moment they are never searched.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import datetime
from typing import Protocol

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from openlfr.store.categories import CATEGORY_VALUES, Category
from openlfr.store.db import Base, Float32Vector, UTCDateTime
from openlfr.vision.types import Box, Quality

__all__ = ["CATEGORY_VALUES", "Category", "Person", "ReferenceImage", "Watchlist"]


class Watchlist(Base):
    __tablename__ = "watchlists"
    __table_args__ = (sa.UniqueConstraint("name", name="uq_watchlists_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    purpose: Mapped[str] = mapped_column(sa.Text, default="")
    created_by: Mapped[str] = mapped_column(sa.String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    people: Mapped[list[Person]] = relationship(
        back_populates="watchlist", cascade="all, delete-orphan", passive_deletes=True, order_by="Person.reference_id"
    )


class Person(Base):
    __tablename__ = "watchlist_people"
    __table_args__ = (
        sa.UniqueConstraint("watchlist_id", "reference_id", name="uq_watchlist_people_reference"),
        sa.CheckConstraint(f"category IN {CATEGORY_VALUES!r}", name="ck_watchlist_people_category"),
        sa.Index("ix_watchlist_people_active", "watchlist_id", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    watchlist_id: Mapped[int] = mapped_column(
        sa.ForeignKey("watchlists.id", ondelete="CASCADE", name="fk_watchlist_people_watchlist")
    )
    reference_id: Mapped[str] = mapped_column(sa.String(100))  # the force's own id for the person
    display_name: Mapped[str] = mapped_column(sa.String(200))
    category: Mapped[str] = mapped_column(sa.String(32))
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    legal_basis: Mapped[str] = mapped_column(sa.Text, default="")  # the power relied on and where the image is from
    added_by: Mapped[str] = mapped_column(sa.String(100))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())

    watchlist: Mapped[Watchlist] = relationship(back_populates="people")
    images: Mapped[list[ReferenceImage]] = relationship(
        back_populates="person", cascade="all, delete-orphan", passive_deletes=True, order_by="ReferenceImage.id"
    )

    def photos(self) -> list[ReferenceImage]:
        """One row per photo, the one enrolment made (rows are in id order; later ones add other models)."""
        firsts: dict[str, ReferenceImage] = {}
        for image in self.images:
            firsts.setdefault(image.sha256, image)
        return list(firsts.values())

    def is_active(self, now: datetime) -> bool:
        return now < self.expires_at

    @classmethod
    def listed_at(cls, now: datetime | sa.BindParameter[datetime]) -> sa.ColumnElement[bool]:
        """The SQL twin of ``is_active``: people still listed (searchable) at ``now``."""
        return cls.expires_at > now


class EnrolledFace(Protocol):
    """What enrolment knows of a face it accepted (``enrolment.photos.AcceptedFace``): what a reference row keeps."""

    box: Box
    quality: Quality
    detector: str
    detector_score: float
    model_id: str
    embedding: np.ndarray
    face_jpeg: bytes


class ReferenceImage(Base):
    __tablename__ = "reference_images"
    __table_args__ = (
        # One row per photo and embedding model (``openlfr watchlist reembed`` adds the current model's).
        sa.UniqueConstraint("person_id", "sha256", "model_id", name="uq_reference_images_file"),
        sa.Index("ix_reference_images_person_model", "person_id", "model_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(
        sa.ForeignKey("watchlist_people.id", ondelete="CASCADE", name="fk_reference_images_person")
    )
    source: Mapped[str] = mapped_column(sa.String(500))  # the file it came from, as given at enrolment
    sha256: Mapped[str] = mapped_column(sa.String(64))  # of the source file's bytes
    # The face region only, as JPEG: shown beside alerts; loaded only when asked for.
    face_jpeg: Mapped[bytes] = mapped_column(sa.LargeBinary, deferred=True)
    box_left: Mapped[int] = mapped_column()
    box_top: Mapped[int] = mapped_column()
    box_right: Mapped[int] = mapped_column()
    box_bottom: Mapped[int] = mapped_column()
    detector: Mapped[str] = mapped_column(sa.String(32))
    detector_score: Mapped[float] = mapped_column()
    face_height_px: Mapped[int] = mapped_column()
    inter_eye_px: Mapped[float] = mapped_column()
    sharpness: Mapped[float] = mapped_column()
    yaw_deg: Mapped[float] = mapped_column()
    pitch_deg: Mapped[float] = mapped_column()
    roll_deg: Mapped[float] = mapped_column()
    model_id: Mapped[str] = mapped_column(sa.String(200))
    embedding: Mapped[np.ndarray] = mapped_column(Float32Vector())
    added_by: Mapped[str] = mapped_column(sa.String(100))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())

    person: Mapped[Person] = relationship(back_populates="images")

    @classmethod
    def of_face(
        cls, face: EnrolledFace, *, source: str, sha256: str, added_by: str, added_at: datetime
    ) -> ReferenceImage:
        """The row of an enrolled face of the photo ``source``: the face's own columns taken by name, its box as
        ``box_*`` and its quality measures named as in ``Quality``."""
        described = {
            name: getattr(face, name) for name in ("detector", "detector_score", "model_id", "embedding", "face_jpeg")
        }
        where = {f"box_{side.name}": getattr(face.box, side.name) for side in fields(Box)}
        return cls(
            source=source,
            sha256=sha256,
            added_by=added_by,
            added_at=added_at,
            **described,
            **where,
            **asdict(face.quality),
        )

    @property
    def quality(self) -> Quality:
        return Quality(**{measure.name: getattr(self, measure.name) for measure in fields(Quality)})

    def quality_dict(self) -> dict[str, float]:
        return self.quality.as_dict()
