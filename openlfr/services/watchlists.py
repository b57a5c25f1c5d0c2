"""Watchlist changes as use cases: create, remove a person or a whole list, bring expiry forward, and list them.
Each runs in the caller's session and writes its audit entry there (enrolment itself is ``services.enrolment``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from openlfr.clock import utc, utc_now
from openlfr.enrolment import service
from openlfr.errors import NotFound
from openlfr.services.context import Context
from openlfr.store.models import Watchlist
from openlfr.store.watchlists import (
    ListedPerson,
    WatchlistSummary,
    active_people,
    find_person,
    get_watchlist,
    watchlist_exists,
    watchlist_summaries,
)

__all__ = [
    "ListedPerson",
    "WatchlistSummary",
    "active_people",
    "create_watchlist",
    "existing",
    "expire",
    "list_watchlists",
    "remove_person",
    "remove_watchlist",
    "watchlist_exists",
]


def existing(db: Session, name: str) -> Watchlist:
    """The named watchlist, or NotFound (the API answers 404)."""
    if not watchlist_exists(db, name):
        raise NotFound(f"no watchlist named {name!r}")
    return get_watchlist(db, name)


def list_watchlists(db: Session, now: datetime | None = None) -> list[WatchlistSummary]:
    return watchlist_summaries(db, utc(now or utc_now()))


def create_watchlist(db: Session, ctx: Context, name: str, purpose: str, now: datetime | None = None) -> Watchlist:
    watchlist = service.create_watchlist(db, name, purpose, ctx.actor, now or utc_now())
    ctx.audit(db, "watchlist.create", f"watchlist:{name}", {"purpose": watchlist.purpose})
    return watchlist


def remove_person(db: Session, ctx: Context, watchlist_name: str, person: str) -> int:
    """Delete a person with their photos and embeddings; returns how many photos went with them."""
    watchlist = existing(db, watchlist_name)
    if find_person(db, watchlist, person) is None:
        raise NotFound(f"nobody with id {person!r} on watchlist {watchlist_name!r}")
    removed = service.remove_person(db, watchlist, person)
    ctx.audit(db, "watchlist.remove_person", f"watchlist:{watchlist_name}/person:{person}", {"images": removed})
    return removed


def remove_watchlist(db: Session, ctx: Context, watchlist_name: str) -> int:
    """Delete a watchlist with everyone on it; returns how many people went with it."""
    watchlist = existing(db, watchlist_name)
    count = len(watchlist.people)
    service.remove_watchlist(db, watchlist)
    ctx.audit(db, "watchlist.remove", f"watchlist:{watchlist_name}", {"people": count})
    return count


def expire(db: Session, ctx: Context, watchlist_name: str, person: str | None, at: datetime) -> int:
    """Stop searching for a person (or everyone on the list) at ``at``, never later than before."""
    watchlist = existing(db, watchlist_name)
    changed = service.expire(db, watchlist, person, at)
    if changed:
        target = f"watchlist:{watchlist_name}" + (f"/person:{person}" if person is not None else "")
        at_text = utc(at).isoformat(timespec="seconds").replace("+00:00", "Z")
        ctx.audit(db, "watchlist.expire", target, {"at": at_text, "people": changed})
    return changed
