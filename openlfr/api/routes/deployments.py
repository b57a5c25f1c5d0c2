"""Deployments: list, draft, read, authorise, cancel, end."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from openlfr.api.deps import DB, AnyPrincipal, AuthoriserWrite, CancelWrite, DrafterWrite, EndWrite
from openlfr.api.schemas import DeploymentOut, DraftIn, JustificationIn, ReasonIn
from openlfr.services import deployments
from openlfr.store.governance_models import Deployment

router = APIRouter(prefix="/api", tags=["deployments"])


@router.get("/deployments")
def list_deployments(_: AnyPrincipal, db: DB) -> list[DeploymentOut]:
    rows = db.scalars(select(Deployment).order_by(Deployment.starts_at.desc(), Deployment.id.desc()))
    return [DeploymentOut.model_validate(row) for row in rows]


@router.post("/deployments", status_code=201)
def draft_deployment(body: DraftIn, write: DrafterWrite) -> DeploymentOut:
    draft = body.model_dump(exclude={"cameras"})
    row = deployments.create_draft(write.db, write.ctx, cameras=[c.model_dump() for c in body.cameras], **draft)
    return DeploymentOut.model_validate(row)


@router.get("/deployments/{deployment_id}")
def get_deployment(deployment_id: int, _: AnyPrincipal, db: DB) -> DeploymentOut:
    return DeploymentOut.model_validate(deployments.get_deployment(db, deployment_id))


@router.post("/deployments/{deployment_id}/authorise")
def authorise_deployment(deployment_id: int, body: JustificationIn, write: AuthoriserWrite) -> DeploymentOut:
    return DeploymentOut.model_validate(deployments.authorise(write.db, write.ctx, deployment_id, body.justification))


@router.post("/deployments/{deployment_id}/cancel")
def cancel_deployment(deployment_id: int, body: ReasonIn, write: CancelWrite) -> DeploymentOut:
    return DeploymentOut.model_validate(deployments.cancel(write.db, write.ctx, deployment_id, body.reason))


@router.post("/deployments/{deployment_id}/end")
def end_deployment(deployment_id: int, write: EndWrite) -> DeploymentOut:
    return DeploymentOut.model_validate(deployments.end(write.db, write.ctx, deployment_id))
