"""Alerts in the database: committed before anyone is told, with their events for the sinks in the same transaction.

A sighting is written once: an alert's natural key (deployment, camera, track, person) is unique in the
database (``uq_alerts_sighting``), and writing a sighting that is already there (a pipeline restarted on the
same frames, a second process on the same deployment) is taken as done: no error, no second row.

Nobody is alerted on once their listing has ended: in the alert's own transaction the person must still be
listed at the sighting's moment (``listed_at_sighting``), on the stored watchlist and, for a deployment, in its
snapshot; a listing expired early or removed after authorisation makes the write refuse (``ListingEnded``) with
nothing written, whatever the pipeline that raised it still believed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Hashable, Mapping
from datetime import datetime
from typing import NotRequired, TypedDict, Unpack

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from openlfr.alerts.outbox import enqueue_alert
from openlfr.alerts.record import AlertFound, AlertRecord
from openlfr.alerts.seen_rejected import embedding_bytes, likely_rejected, score_to_references
from openlfr.clock import utc_now
from openlfr.errors import OpenLFRError
from openlfr.store.alert_models import Alert, AlertLook
from openlfr.store.db import Store, record_from
from openlfr.store.governance_models import Deployment, SnapshotPerson
from openlfr.store.models import Person, Watchlist

SIGHTING = (Alert.deployment_id, Alert.camera, Alert.track_id, Alert.person_ref)


def _image_id(reference: Hashable) -> int | None:
    """Gallery reference ids are image row ids for stored watchlists; anything else has no image to show."""
    return reference if isinstance(reference, int) and not isinstance(reference, bool) else None


def candidate_list(found: AlertFound, names: Mapping[str, str]) -> list[dict[str, object]]:
    return [
        {
            "person": str(person),
            "name": names.get(str(person), ""),
            "reference_image_id": _image_id(reference),
            "score": round(score, 4),
        }
        for person, reference, score in found.candidates
    ]


class ListingEnded(OpenLFRError):
    """The person of an alert was no longer listed when they were seen (expired, removed): no alert is written."""


def listed_at_sighting(
    session: sa.orm.Session, watchlist_name: str, person_ref: str, deployment_id: int | None, seen_at: datetime
) -> bool:
    """Whether the person is still listed at ``seen_at``: on the stored watchlist and in the deployment's snapshot.

    On PostgreSQL the listing row is locked for share, so an expiry or removal committing meanwhile waits for this
    transaction (and the next alert after it is refused). A gallery of photos in memory (a bare scan of no stored
    watchlist) has no listing to consult; a local scan's own deployment (recorded, never authorised) has no snapshot,
    so its people are those of the stored watchlist."""
    if deployment_id is not None and _snapshot_taken(session, deployment_id):
        in_snapshot = session.scalar(
            sa.select(SnapshotPerson.id).where(
                SnapshotPerson.deployment_id == deployment_id,
                SnapshotPerson.person_ref == person_ref,
                SnapshotPerson.expires_at > seen_at,
            )
        )
        if in_snapshot is None:
            return False
    elif session.scalar(sa.select(Watchlist.id).where(Watchlist.name == watchlist_name)) is None:
        return True
    listing = (
        sa.select(Person.id)
        .join(Watchlist, Watchlist.id == Person.watchlist_id)
        .where(Watchlist.name == watchlist_name, Person.reference_id == person_ref, Person.expires_at > seen_at)
    )
    if session.get_bind().dialect.name == "postgresql":
        listing = listing.with_for_update(read=True, of=Person)
    return session.scalar(listing) is not None


def _snapshot_taken(session: sa.orm.Session, deployment_id: int) -> bool:
    taken = session.scalar(sa.select(Deployment.snapshot_taken_at).where(Deployment.id == deployment_id))
    return taken is not None


class AlertPlace(TypedDict):
    """Where an alert belongs: its watchlist (with the display names of the people on it), and its deployment and
    reference image when known (else the gallery's reference, when it is an image row)."""

    watchlist_name: str
    names: Mapping[str, str]
    deployment_id: NotRequired[int | None]
    reference_image_id: NotRequired[int | None]


class AlertDatabase:
    """Writes alert rows. ``commit`` returns only once the row is durable: then it may be announced."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def commit(self, found: AlertFound, **place: Unpack[AlertPlace]) -> AlertRecord:
        """The durable alert of this sighting: written now, or the one written before for the same sighting."""
        record, _ = self.write(found, **place)
        return record

    def write(self, found: AlertFound, **place: Unpack[AlertPlace]) -> tuple[AlertRecord, bool]:
        """As ``commit``, and whether the alert is new (False: this sighting was already written). Raises
        ``ListingEnded``, writing nothing, when the person was no longer listed at the sighting."""
        watchlist_name, names = place["watchlist_name"], place["names"]
        deployment_id, reference_image_id = place.get("deployment_id"), place.get("reference_image_id")
        person = str(found.person_id)
        row = Alert(
            uid=str(uuid.uuid4()),
            created_at=utc_now(),
            seen_at=found.seen_at,
            deployment_id=deployment_id,
            watchlist_name=watchlist_name,
            camera=found.camera,
            track_id=found.track_id,
            media_time_s=round(found.media_time, 3),
            person_ref=person,
            person_name=names.get(person, ""),
            reference_image_id=reference_image_id if reference_image_id is not None else _image_id(found.reference_id),
            score=float(found.score),
            threshold=float(found.threshold),
            model_id=found.model_id,
            candidates=candidate_list(found, names),
            evidence=dict(found.evidence),
            probe_jpeg=found.probe_jpeg,
            probe_embedding=embedding_bytes(found.probe_embedding),
        )
        with self.store.session() as session:
            # Checked before the row is written: a refused alert's probe never reaches a table page or the WAL.
            if not listed_at_sighting(session, watchlist_name, person, deployment_id, found.seen_at):
                raise ListingEnded(
                    f"{person} was no longer listed on {watchlist_name!r} when seen on camera {found.camera} "
                    f"(track {found.track_id}): no alert written"
                )
            mark = likely_rejected(
                session,
                deployment_id=deployment_id,
                person_ref=person,
                model_id=found.model_id,
                probe=found.probe_embedding,
                to_references=score_to_references(found.person_id, found.candidates, found.score),
            )
            if mark is not None:
                row.seen_rejected_alert_id, row.seen_rejected_score = mark.alert_id, mark.score
            values = row.column_values(without=("id",))
            dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
            new_id = session.scalar(
                dialect.insert(Alert)
                .values(values)
                .on_conflict_do_nothing(index_elements=[column.key for column in SIGHTING])
                .returning(Alert.id)
            )
            if new_id is None:
                earlier = session.scalars(
                    sa.select(Alert)
                    .where(*(column == getattr(row, column.key) for column in SIGHTING))
                    .options(sa.orm.undefer(Alert.probe_jpeg))
                ).one()
                return record_of(earlier), False
            row.id = new_id
            # The track's best looks, in the alert's own transaction: written with the alert or not at all.
            for position, (quality, jpeg) in enumerate(found.looks[:3], start=1):
                session.add(AlertLook(alert_id=new_id, position=position, quality=quality, image_jpeg=jpeg))
            # The outbox: one row per sink of the deployment, committed with the alert or not at all.
            enqueue_alert(session, row)
        # Frame-to-alert latency: from the deciding frame's arrival to the alert being durable.
        latency = (time.monotonic() - found.arrival) * 1000.0
        with self.store.session() as session:
            session.execute(sa.update(Alert).where(Alert.id == row.id).values(latency_ms=latency))
        return record_of(row, probe_jpeg=found.probe_jpeg, latency_ms=latency), True

    def load(self, alert_id: int) -> AlertRecord | None:
        with self.store.session() as session:
            row = session.get(Alert, alert_id, options=[sa.orm.undefer(Alert.probe_jpeg)])
            if row is None:
                return None
            return record_of(row)


def record_of(row: Alert, *, probe_jpeg: bytes | None = None, latency_ms: float | None = None) -> AlertRecord:
    """The alert as the rest of the system sees it; values already at hand save reading them back."""
    return record_from(
        AlertRecord,
        row,
        candidates=list(row.candidates or []),
        evidence=dict(row.evidence or {}),
        probe_jpeg=row.probe_jpeg if probe_jpeg is None else probe_jpeg,
        latency_ms=row.latency_ms if latency_ms is None else latency_ms,
    )
