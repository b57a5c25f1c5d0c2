"""A running deployment hears, within seconds, of a listing that ended after its authorisation.

The snapshot copies each person's ``expires_at`` at authorisation, and every camera process searches a gallery
built from it, so ``openlfr watchlist expire`` (or removing someone) after authorisation would not reach a running
pipeline. A :class:`ListingWatch` compares the snapshot with the live listings every ``LISTING_CHECK_S`` seconds
(``poll``, called by the run's bookkeeping thread: no thread of its own):
a person expired early has their snapshot entry brought down to the listing's new end, one removed to the moment
it was noticed (one conditional ``UPDATE`` per entry, so among several processes running the deployment's cameras
one writes it and audits it, actor ``system``), and the run is told (``on_ended``) so that it rebuilds its
pipeline from the snapshot. Each alert is also refused at the database while its person is not listed
(``openlfr.alerts.database.listed_at_sighting``): this watch bounds how long a pipeline keeps matching someone
who is no longer listed, the database makes sure none of it is recorded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select, update

from openlfr.clock import utc_now
from openlfr.services.context import Context
from openlfr.store import Store
from openlfr.store.governance_models import Deployment, SnapshotPerson
from openlfr.store.models import Person, Watchlist

log = logging.getLogger(__name__)

LISTING_CHECK_S = 2.0  # how often a running deployment compares its snapshot with the live listings


def end_snapshot_listings(store: Store, ctx: Context, deployment_id: int) -> dict[str, datetime]:
    """Bring the deployment's snapshot entries down to the live listings' ends; every entry's end afterwards."""
    now = utc_now()
    with store.session() as db:
        row = db.get(Deployment, deployment_id)
        if row is None or row.snapshot_destroyed_at is not None:
            return {}
        snapshot = dict(
            db.execute(
                select(SnapshotPerson.person_ref, SnapshotPerson.expires_at).where(
                    SnapshotPerson.deployment_id == deployment_id
                )
            ).all()
        )
        listed = dict(
            db.execute(
                select(Person.reference_id, Person.expires_at)
                .join(Watchlist, Watchlist.id == Person.watchlist_id)
                .where(Watchlist.name == row.watchlist_name, Person.reference_id.in_(list(snapshot)))
            ).all()
        )
        ended: dict[str, str] = {}
        for ref, ends in snapshot.items():
            new_end = listed.get(ref, now)  # removed: ends now
            if new_end >= ends:
                continue
            result = db.execute(
                update(SnapshotPerson)
                .where(
                    SnapshotPerson.deployment_id == deployment_id,
                    SnapshotPerson.person_ref == ref,
                    SnapshotPerson.expires_at > new_end,
                )
                .values(expires_at=new_end)
            )
            snapshot[ref] = new_end
            if getattr(result, "rowcount", 0):  # this process ended it (another may have, meanwhile)
                ended[ref] = new_end.isoformat(timespec="seconds") + (" (removed)" if ref not in listed else "")
        if ended:
            ctx.audit(db, "deployment.snapshot_listing_ended", f"deployment:{deployment_id}", {"people": ended})
        return snapshot


class ListingWatch:
    """Calls ``on_ended(people)`` when snapshot entries end earlier than when the pipeline was built (``settle``)."""

    def __init__(
        self,
        store: Store,
        ctx: Context,
        deployment_id: int,
        on_ended: Callable[[list[str]], None],
        every_s: float = LISTING_CHECK_S,
    ) -> None:
        self.store, self.ctx, self.deployment_id, self.on_ended = store, ctx, deployment_id, on_ended
        self.every_s = every_s
        self._checked_at = time.monotonic()  # the first check is due one interval after the pipeline is built
        self.basis: dict[str, datetime] | None = None  # the entries' ends the running gallery was built with
        self._failing = False

    def settle(self) -> None:
        """A pipeline is about to be built from the snapshot: bring it up to date first; later changes are news."""
        self.basis = end_snapshot_listings(self.store, self.ctx, self.deployment_id)

    def poll(self) -> None:
        """Compare now if the last comparison is ``every_s`` old."""
        if time.monotonic() - self._checked_at >= self.every_s:
            self._checked_at = time.monotonic()
            self.round()

    def round(self) -> None:
        try:
            ends = end_snapshot_listings(self.store, self.ctx, self.deployment_id)
        except Exception as exc:  # the database is away: the alert gate still refuses what must not be written
            if not self._failing:
                log.warning("deployment %d: cannot compare the snapshot with the listings: %s", self.deployment_id, exc)
            self._failing = True
            return
        self._failing = False
        basis = self.basis
        if basis is None:
            return
        ended = sorted(ref for ref, at in ends.items() if at < basis.get(ref, at))
        if ended:
            self.basis = ends
            self.on_ended(ended)
