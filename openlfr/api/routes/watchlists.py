"""Watchlists: list them, create one, enrol a person from uploaded photos, remove a person."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from openlfr.api.deps import (
    DB,
    AdminPrincipal,
    AdminWrite,
    DrafterPrincipal,
    own_write,
    server,
)
from openlfr.api.enrol_upload import ENROL_FORM_SCHEMA, read_enrol_form
from openlfr.api.schemas import (
    EnrolledOut,
    ReembedOut,
    RemovedImagesOut,
    WatchlistIn,
    WatchlistNameOut,
    WatchlistOut,
)
from openlfr.services import enrolment, reembed, watchlists

router = APIRouter(prefix="/api", tags=["watchlists"])


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


@router.delete("/watchlists/{name}/people/{person}")
def remove_person(name: str, person: str, write: AdminWrite) -> RemovedImagesOut:
    return RemovedImagesOut(removed_images=watchlists.remove_person(write.db, write.ctx, name, person))


@router.post("/watchlists/{name}/reembed")
def reembed_watchlist(name: str, write: AdminWrite) -> ReembedOut:
    """Give every listed person's photos an embedding of the current model (``openlfr watchlist reembed``)."""
    return ReembedOut.model_validate(reembed.reembed_watchlist(write.db, write.ctx, name).as_dict())
