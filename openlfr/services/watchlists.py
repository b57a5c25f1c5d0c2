"""Watchlist changes as use cases: create, remove a person or a whole list, bring expiry forward, and list them;
and looking at the people on one, a page at a time, one person, one face picture. Each runs in the caller's
session and writes its audit entry there (enrolment itself is ``services.enrolment``): a look at listed people is
a person's use of biometric data, audited with who was shown.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from openlfr.clock import utc, utc_now
from openlfr.enrolment import service
from openlfr.errors import NotFound, OpenLFRError
from openlfr.services.context import Context
from openlfr.store import watchlist_pages
from openlfr.store.models import Person, ReferenceImage, Watchlist
from openlfr.store.watchlist_pages import PeoplePage, PersonRow
from openlfr.store.watchlists import (
    ListedPerson,
    WatchlistSummary,
    active_people,
    find_person,
    get_watchlist,
    watchlist_exists,
    watchlist_summaries,
)
from openlfr.text import plain_text
from openlfr.vision.image_io import thumbnail_jpeg

PAGE_SIZE = 50  # people on a page of a watchlist, in the console and by default in the API

__all__ = [
    "ListedPerson",
    "PeoplePage",
    "PersonRow",
    "WatchlistSummary",
    "active_people",
    "create_watchlist",
    "existing",
    "expire",
    "expire_listing",
    "list_watchlists",
    "remove_person",
    "remove_watchlist",
    "view_people",
    "view_person",
    "view_photo",
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


def _iso(moment: datetime) -> str:
    return utc(moment).isoformat(timespec="seconds").replace("+00:00", "Z")


def expire(db: Session, ctx: Context, watchlist_name: str, person: str | None, at: datetime, reason: str = "") -> int:
    """Stop searching for a person (or everyone on the list) at ``at``, never later than before."""
    watchlist = existing(db, watchlist_name)
    changed = service.expire(db, watchlist, person, at)
    if changed:
        target = f"watchlist:{watchlist_name}" + (f"/person:{person}" if person is not None else "")
        details: dict[str, object] = {"at": _iso(at), "people": changed}
        if reason:
            details["reason"] = reason
        ctx.audit(db, "watchlist.expire", target, details)
    return changed


def _listed(db: Session, watchlist_name: str, person: str) -> Person:
    found = find_person(db, existing(db, watchlist_name), person)
    if found is None:
        raise NotFound(f"nobody with id {person!r} on watchlist {watchlist_name!r}")
    return found


def expire_listing(db: Session, ctx: Context, watchlist_name: str, person: str, at: datetime, reason: str) -> Person:
    """``expire`` for one person, asked of a page or the API: a time that would not bring the listing's end
    forward is refused, saying when it ends now."""
    listed = _listed(db, watchlist_name, person)
    ends = listed.expires_at
    if not expire(db, ctx, watchlist_name, person, at, reason):
        raise OpenLFRError(
            f"{person} is searched until {_iso(ends)} already; an expiry is only ever brought forward, "
            f"never put back (remove them and enrol them again to list them longer)"
        )
    return listed


def view_people(
    db: Session, ctx: Context, watchlist_name: str, query: str, offset: int, limit: int, photos: bool
) -> PeoplePage:
    """A page of a watchlist's people, found by part of their id or name; audited with the search and who was
    shown (and whether with their face pictures)."""
    watchlist = existing(db, watchlist_name)
    page = watchlist_pages.people_page(db, watchlist.id, plain_text(query, "the search"), offset, limit)
    shown = [p.reference_id for p in page.people]
    details = {"q": query, "first": offset + 1, "shown": shown, "total": page.total, "photos": photos}
    ctx.audit(db, "watchlist.people_viewed", f"watchlist:{watchlist_name}", details)
    return page


def view_person(
    db: Session, ctx: Context, watchlist_name: str, person: str, photos: bool
) -> tuple[PersonRow, list[ReferenceImage]]:
    """One listed person with their photos (one row per photo file, no face picture), audited."""
    listed = _listed(db, watchlist_name, person)
    ctx.audit(db, "watchlist.person_viewed", f"watchlist:{watchlist_name}/person:{person}", {"photos": photos})
    return watchlist_pages.person_row(db, listed), watchlist_pages.person_photos(db, listed.id)


def view_photo(db: Session, ctx: Context, watchlist_name: str, person: str, image_id: int, longest: int) -> bytes:
    """The face picture of one of a listed person's photos, as a thumbnail ``longest`` pixels at most; each view
    audited."""
    listed = _listed(db, watchlist_name, person)
    picture = watchlist_pages.face_picture(db, listed.id, image_id)
    if picture is None:
        raise NotFound(f"{person} on watchlist {watchlist_name!r} has no photo {image_id}")
    target = f"watchlist:{watchlist_name}/person:{person}"
    ctx.audit(db, "watchlist.photo_viewed", target, {"image": image_id})
    return thumbnail_jpeg(picture, "the stored face picture", longest, ctx.settings.max_image_pixels)
