"""Deployments: draft, list, read, authorise, cancel, end; footage uploaded for retrospective searches."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request
from fastapi.concurrency import run_in_threadpool

from openlfr.api.deps import (
    DB,
    AnyPrincipal,
    AuthoriserWrite,
    CancelWrite,
    DrafterPrincipal,
    DrafterWrite,
    EndWrite,
    own_write,
    server,
)
from openlfr.api.schemas import CameraStateOut, DeploymentOut, DraftIn, EndIn, FootageOut, JustificationIn, ReasonIn
from openlfr.runtime.camera_health import camera_states
from openlfr.services import deployments, footage, retrospective

router = APIRouter(prefix="/api", tags=["deployments"])


@router.post("/deployments", status_code=201)
def draft_deployment(body: DraftIn, write: DrafterWrite) -> DeploymentOut:
    draft = body.model_dump(exclude={"cameras"})
    row = deployments.create_draft(write.db, write.ctx, cameras=[c.model_dump() for c in body.cameras], **draft)
    return DeploymentOut.model_validate(row)


@router.get("/deployments")
def list_deployments(_: AnyPrincipal, db: DB) -> list[DeploymentOut]:
    """Every deployment, the latest window first, each with its phase and whether it may match now."""
    return DeploymentOut.each(deployments.all_deployments(db))


@router.get("/deployments/{deployment_id}")
def get_deployment(deployment_id: int, _: AnyPrincipal, db: DB) -> DeploymentOut:
    row = deployments.get_deployment(db, deployment_id)
    shown = DeploymentOut.model_validate(row)
    states = camera_states(db, row, live=shown.may_match)
    return shown.model_copy(
        update={"camera_states": {name: CameraStateOut(**health.as_dict()) for name, health in states.items()}}
    )


@router.post("/deployments/{deployment_id}/authorise")
def authorise_deployment(deployment_id: int, body: JustificationIn, write: AuthoriserWrite) -> DeploymentOut:
    return DeploymentOut.model_validate(deployments.authorise(write.db, write.ctx, deployment_id, body.justification))


@router.post("/deployments/{deployment_id}/cancel")
def cancel_deployment(deployment_id: int, body: ReasonIn, write: CancelWrite) -> DeploymentOut:
    return DeploymentOut.model_validate(deployments.cancel(write.db, write.ctx, deployment_id, body.reason))


@router.post("/deployments/{deployment_id}/end")
def end_deployment(deployment_id: int, write: EndWrite, body: Annotated[EndIn | None, Body()] = None) -> DeploymentOut:
    reason = body.reason if body is not None else None
    return DeploymentOut.model_validate(deployments.end(write.db, write.ctx, deployment_id, reason))


@router.put("/footage", status_code=201)
async def upload_footage(
    request: Request, principal: DrafterPrincipal, name: Annotated[str, Query(min_length=1, max_length=200)]
) -> FootageOut:
    """Recorded footage for a retrospective search, as the raw request body (``name``: the file's name); written to
    disk as it arrives, kept only while a search needs it (``openlfr.services.footage``)."""
    state = server(request)
    part, size, sha256 = await footage.receive(state.settings, request.stream())

    def work() -> FootageOut:
        with own_write(request, principal) as write:
            seconds_of = partial(  # named as sent, not its .part file; first frames decoded, pixels bounded
                retrospective.file_seconds, shown=f"the upload {name!r}", max_pixels=state.settings.max_upload_pixels
            )
            path, seconds = footage.keep(write.db, write.ctx, part, name, size, sha256, seconds_of)
        return FootageOut(source=footage.reference(path), bytes=size, sha256=sha256, seconds=seconds)

    return await run_in_threadpool(work)
