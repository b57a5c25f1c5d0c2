"""Watchlists: list them, create one, enrol a person from uploaded photos, remove a person; look at the people on
one (a page at a time, found by id or name), at one person and their photos, bring a listing's expiry forward.

Looking at listed people is audited as any use of biometric data is; their face pictures are the administrator's
only (who enrols them): an operator or authoriser sees a reference picture beside an alert or a photo search's
candidate, never by browsing a watchlist; the auditor sees neither the people nor their pictures."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from openlfr.api import answers
from openlfr.api.deps import (
    DB,
    AdminPrincipal,
    AdminWrite,
    DrafterPrincipal,
    DrafterWrite,
    own_write,
    server,
)
from openlfr.api.enrol_upload import ENROL_FORM_SCHEMA, read_enrol_form
from openlfr.api.paths import PERSON_IN_PATH
from openlfr.api.schemas import (
    EnrolledOut,
    Joined,
    ReembedOut,
    RemovedImagesOut,
    WatchlistIn,
    WatchlistNameOut,
    WatchlistOut,
)
from openlfr.api.watchlist_schemas import (
    ExpiredOut,
    ExpireIn,
    ListedPersonOut,
    PeoplePageOut,
    PersonOut,
    PhotoOut,
)
from openlfr.clock import utc_now
from openlfr.services import enrolment, reembed, watchlists
from openlfr.services.watchlists import PAGE_SIZE, PersonRow

router = APIRouter(prefix="/api", tags=["watchlists"])

THUMBNAIL_PX = 96  # the longest side of a face picture as the console shows it
Search = Annotated[str, Query(max_length=100, description="part of a person's id or name, any case")]
Offset = Annotated[int, Query(ge=0, le=10**9)]
Limit = Annotated[int, Query(ge=1, le=200)]


def listed_out(row: PersonRow, now: datetime) -> ListedPersonOut:
    named = {"person": row.reference_id, "name": row.display_name, "active": row.expires_at > now}
    return ListedPersonOut.model_validate(Joined(row, **named))


@router.get("/watchlists")
def list_watchlists(_: DrafterPrincipal, db: DB) -> list[WatchlistOut]:
    return WatchlistOut.each(watchlists.list_watchlists(db))


@router.post("/watchlists", status_code=201)
def create_watchlist(body: WatchlistIn, write: AdminWrite) -> WatchlistNameOut:
    watchlists.create_watchlist(write.db, write.ctx, body.name, body.purpose)
    return WatchlistNameOut(name=body.name)


@router.post("/watchlists/{name}/people", status_code=201, openapi_extra=ENROL_FORM_SCHEMA)
async def enrol_person(name: str, request: Request, principal: AdminPrincipal) -> EnrolledOut:
    """Enrol a person from uploaded photos (multipart: the fields and ``images``), held in memory only; the
    caller is authenticated before the body is read."""
    state = server(request)
    settings = state.settings
    form, uploads = await read_enrol_form(request, settings.max_upload_bytes, settings.max_upload_pixels)
    person, display_name, category = form.person, form.display_name, form.category
    reason, legal_basis = form.reason, form.legal_basis

    def work() -> EnrolledOut:
        # The photos are analysed off the event loop, in a session of the worker thread's own.
        with own_write(request, principal) as write:
            result = enrolment.enrol_uploads(
                write.db, write.ctx, name, person, display_name, category, reason, legal_basis, uploads
            )
        return EnrolledOut.model_validate(result)

    return await run_in_threadpool(work)


@router.post("/watchlists/{name}/reembed")
def reembed_watchlist(name: str, write: AdminWrite) -> ReembedOut:
    """Give every listed person's photos an embedding of the current model (``openlfr watchlist reembed``)."""
    return ReembedOut.model_validate(reembed.reembed_watchlist(write.db, write.ctx, name).as_dict())


@router.get("/watchlists/{name}/people")
def list_people(
    name: str, write: DrafterWrite, q: Search = "", offset: Offset = 0, limit: Limit = PAGE_SIZE
) -> PeoplePageOut:
    """People on the watchlist whose id or name contains ``q``, by id, ``limit`` from ``offset``; audited with the
    search and who was shown."""
    query = q.strip()
    page = watchlists.view_people(write.db, write.ctx, name, query, offset, limit, photos=False)
    now = utc_now()
    people = [listed_out(row, now) for row in page.people]
    return PeoplePageOut(watchlist=name, q=query, offset=offset, total=page.total, people=people)


@router.get(
    "/watchlists/{name}/people/{person:path}/photos/{image_id}.jpg", response_class=Response, responses=answers.JPEG
)
def person_photo(name: str, person: str, image_id: int, write: AdminWrite) -> Response:
    """A listed person's face picture as a thumbnail (96 px at most), for the administrator who manages the list;
    each view audited."""
    picture = watchlists.view_photo(write.db, write.ctx, name, person, image_id, THUMBNAIL_PX)
    return answers.jpeg(picture, "face picture")


@router.post("/watchlists/{name}/people/{person:path}/expire")
def expire_person(name: str, person: str, body: ExpireIn, write: AdminWrite) -> ExpiredOut:
    """Stop searching for the person at ``at`` (now when left out), with the reason, audited (as ``openlfr
    watchlist expire``); a time after their listing's end now is refused: an expiry is never put back."""
    at = body.at or utc_now()
    listed = watchlists.expire_listing(write.db, write.ctx, name, person, at, body.reason)
    return ExpiredOut(person=person, expires_at=listed.expires_at)


@router.get(f"/watchlists/{{name}}/people/{PERSON_IN_PATH}")
def get_person(name: str, person: str, write: DrafterWrite) -> PersonOut:
    """One listed person with each photo's quality (not the pictures themselves); audited."""
    row, photos = watchlists.view_person(write.db, write.ctx, name, person, photos=False)
    listed = listed_out(row, utc_now())
    return PersonOut.model_validate(Joined(listed, watchlist=name, images=PhotoOut.each(photos)))


@router.delete(f"/watchlists/{{name}}/people/{PERSON_IN_PATH}")
def remove_person(name: str, person: str, write: AdminWrite) -> RemovedImagesOut:
    return RemovedImagesOut(removed_images=watchlists.remove_person(write.db, write.ctx, name, person))
