"""Watchlists: list them, create one, enrol a person from uploaded photos, remove a person."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from openlfr.api.deps import DB, AdminPrincipal, AdminWrite, DrafterPrincipal, committed, context, server
from openlfr.api.enrol_upload import read_uploads
from openlfr.api.schemas import EnrolledOut, RemovedImagesOut, WatchlistIn, WatchlistNameOut, WatchlistOut
from openlfr.services import enrolment, watchlists

router = APIRouter(prefix="/api", tags=["watchlists"])


@router.get("/watchlists")
def list_watchlists(_: DrafterPrincipal, db: DB) -> list[WatchlistOut]:
    return [WatchlistOut.model_validate(w) for w in watchlists.list_watchlists(db)]


@router.post("/watchlists", status_code=201)
def create_watchlist(body: WatchlistIn, write: AdminWrite) -> WatchlistNameOut:
    watchlists.create_watchlist(write.db, write.ctx, body.name, body.purpose)
    return WatchlistNameOut(name=body.name)


@router.post("/watchlists/{name}/people", status_code=201)
async def enrol_person(
    name: str,
    request: Request,
    person: Annotated[str, Form(min_length=1, max_length=100)],
    display_name: Annotated[str, Form(min_length=1, max_length=200)],
    category: Annotated[str, Form(min_length=1, max_length=32)],
    images: Annotated[list[UploadFile], File()],
    principal: AdminPrincipal,
    reason: Annotated[str, Form(max_length=5000)] = "",
    legal_basis: Annotated[str, Form(max_length=5000)] = "",
) -> EnrolledOut:
    state = server(request)
    uploads = await read_uploads(images, state.settings.max_upload_bytes)

    def work() -> EnrolledOut:
        # The photos are analysed off the event loop, in a session of the worker thread's own.
        with state.sessions() as db, committed(db, context(request, principal), principal) as write:
            result = enrolment.enrol_uploads(
                write.db, write.ctx, name, person, display_name, category, reason, legal_basis, uploads
            )
        return EnrolledOut.model_validate(result)

    return await run_in_threadpool(work)


@router.delete("/watchlists/{name}/people/{person}")
def remove_person(name: str, person: str, write: AdminWrite) -> RemovedImagesOut:
    return RemovedImagesOut(removed_images=watchlists.remove_person(write.db, write.ctx, name, person))
