"""The deployments (the list, with the draft form; one deployment with its alerts) and the published record."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from openlfr.api.deps import DB, DRAFTS, SEES_ALERTS, AnyPrincipal
from openlfr.clock import utc_now
from openlfr.governance import deployments
from openlfr.runtime.camera_health import DeploymentCameras, camera_states
from openlfr.services import footage, records, reviews, watchlists
from openlfr.services.deployments import get_deployment
from openlfr.web import lists
from openlfr.web.render import render

router = APIRouter(include_in_schema=False)


@router.get("/deployments")
def deployments_page(request: Request, principal: AnyPrincipal, db: DB) -> HTMLResponse:
    moment = utc_now()
    can_draft = principal.role in DRAFTS
    settings = request.app.state.server.settings
    return render(
        request,
        "deployments.html",
        principal,
        **lists.deployments_list(request, db, moment),  # filtered and paged (deployments_list.html)
        watchlists=watchlists.list_watchlists(db, moment) if can_draft else [],
        can_draft=can_draft,
        sinks=settings.sinks if can_draft else {},
        uploads=footage.uploads_of(db, settings, principal.username) if can_draft else [],
        max_window_hours=settings.deployment_max_window_hours,
        max_upload_bytes=settings.rfr_max_upload_bytes,
    )


@router.get("/deployments/{deployment_id}")
def deployment_page(deployment_id: int, request: Request, principal: AnyPrincipal, db: DB) -> HTMLResponse:
    row = get_deployment(db, deployment_id)
    moment = utc_now()
    permission = deployments.may_match(row, moment)
    cameras = DeploymentCameras(row.id, row.name, camera_states(db, row, live=permission.allowed))
    # Before its snapshot a draft has no size yet: what its watchlist holds now says what it would be.
    listed = None
    if row.snapshot_taken_at is None:
        listed = next((w for w in watchlists.list_watchlists(db, moment) if w.name == row.watchlist_name), None)
    return render(
        request,
        "deployment.html",
        principal,
        d=row,
        phase=deployments.phase(row, moment).value,
        permission=permission,
        cameras=cameras,
        cameras_down=permission.allowed and bool(cameras.down),
        record=records.record_of(db, row),
        reviews=reviews.alerts_with_reviews(db, row.id, limit=5000, newest_first=False),
        sees_alerts=principal.role in SEES_ALERTS,
        listed=listed,
    )


@router.get("/records")
def records_page(request: Request, principal: AnyPrincipal, db: DB) -> HTMLResponse:
    """The records of a period (``since``, ``until``: days), filtered by kind and place, a page at a time."""
    return render(request, "records.html", principal, **lists.records_list(request, db, utc_now()))
