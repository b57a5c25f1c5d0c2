"""The alert queue (with the live camera pictures), for operators and authorisers; one alert's page is
``openlfr.web.alert``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from openlfr.api.deps import DB, AlertViewerPrincipal, server
from openlfr.governance import adjudication
from openlfr.runtime.camera_health import live_cameras
from openlfr.services import alert_source, reviews
from openlfr.services.console import require_second_verifier
from openlfr.web.render import render

router = APIRouter(include_in_schema=False)


def _queue_items(db: Session, request: Request) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
    second = require_second_verifier(db, server(request).settings)
    waiting: list[dict[str, Any]] = []
    done: list[dict[str, Any]] = []
    for alert, review in reviews.alerts_with_reviews(db, limit=300):
        stage = adjudication.stage(review, second)
        item = {"review": review, "stage": stage, "alert": alert_source.facts(db, alert, review)}
        (done if stage == "closed" else waiting).append(item)
    return waiting, done[:30], second


def _live_tiles(db: Session) -> dict[str, Any]:
    """The live cameras' tiles, each with its health (a camera down shows red, with since when and why), and a
    banner for each deployment with a camera down."""
    groups = live_cameras(db)
    tiles = [
        {"deployment_id": group.deployment_id, "deployment": group.name, "camera": name, "health": health}
        for group in groups
        for name, health in group.states.items()
    ]
    return {"tiles": tiles, "banners": [f"{group.name}: {group.banner}" for group in groups if group.down]}


@router.get("/queue")
def queue(request: Request, principal: AlertViewerPrincipal, db: DB) -> HTMLResponse:
    waiting, done, second = _queue_items(db, request)
    return render(request, "queue.html", principal, waiting=waiting, done=done, second=second, **_live_tiles(db))


@router.get("/queue/items")
def queue_items(request: Request, principal: AlertViewerPrincipal, db: DB) -> HTMLResponse:
    waiting, done, second = _queue_items(db, request)
    return render(request, "queue_items.html", principal, waiting=waiting, done=done, second=second)


@router.get("/queue/cameras")
def queue_cameras(request: Request, principal: AlertViewerPrincipal, db: DB) -> HTMLResponse:
    return render(request, "queue_cameras.html", principal, **_live_tiles(db))
