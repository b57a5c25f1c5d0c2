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
from openlfr.services import alert_source, listings, reviews
from openlfr.services.console import require_second_verifier
from openlfr.web import lists, paging
from openlfr.web.render import render

router = APIRouter(include_in_schema=False)


STATE_LABELS = {listings.OPEN: "waiting (any stage)", "all": "all alerts"}
RECENTLY_CLOSED = 10  # shown under the waiting ones, as a reminder of what was just done


def _filters(request: Request) -> listings.QueueFilter:
    state = lists.choice(request, "state", listings.QUEUE_STATES) or listings.OPEN
    deployment = lists.number(request, "deployment", 0) or None
    return listings.QueueFilter(state=state, deployment_id=deployment, camera=lists.text(request, "camera"))


def _items(db: Session, rows: list[Any], second: bool) -> list[dict[str, Any]]:
    found = []
    for alert, saved in rows:
        review = saved or reviews.waiting_review(alert)
        stage = adjudication.stage(review, second)
        found.append({"review": review, "stage": stage, "alert": alert_source.facts(db, alert, review)})
    return found


def _queue_items(db: Session, request: Request) -> dict[str, Any]:
    """The queue's list as filtered (by default: every alert still waiting for someone), a page at a time, newest
    first; the filters and page are kept in the fragment's address, so the live updates keep them too."""
    second = require_second_verifier(db, server(request).settings)
    where = _filters(request)
    size = paging.page_size(lists.number(request, "size", paging.DEFAULT_SIZE))
    kept = {**where.as_params(), "size": size if size != paging.DEFAULT_SIZE else None}
    number = lists.number(request, "page", 1)
    page = paging.numbered(
        db,
        listings.queue_query(where, second),
        number,
        size,
        lambda n: paging.link("/queue", {**kept, "page": n if n > 1 else None}),
    )
    opened = where.state == listings.OPEN
    open_total = page.total if opened else paging.count(db, listings.queue_query(where, second, listings.OPEN))
    done: list[Any] = []
    if opened:
        done = list(db.execute(listings.queue_query(where, second, "closed").limit(RECENTLY_CLOSED)).all())
    return {
        "page": page,
        "items": _items(db, page.items, second),
        "done": _items(db, done, second),
        "open_total": open_total,
        "second": second,
        "filters": where,
        "filtered": any(v for k, v in where.as_params().items()),
        "states": listings.QUEUE_STATES,
        "state_labels": STATE_LABELS,
        "closed_link": paging.link("/queue", {**kept, "state": "closed"}),
        "fragment": paging.link("/queue/items", {**kept, "page": page_number(page)}),
    }


def page_number(page: paging.Page) -> int | None:
    """The number of the page shown (None for the first), for the fragment's address."""
    return None if page.start <= 1 else (page.start - 1) // page.size + 1


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
    choices = listings.deployments_with_alerts(db)
    items = _queue_items(db, request)
    return render(request, "queue.html", principal, deployment_choices=choices, **items, **_live_tiles(db))


@router.get("/queue/items")
def queue_items(request: Request, principal: AlertViewerPrincipal, db: DB) -> HTMLResponse:
    return render(request, "queue_items.html", principal, **_queue_items(db, request))


@router.get("/queue/cameras")
def queue_cameras(request: Request, principal: AlertViewerPrincipal, db: DB) -> HTMLResponse:
    return render(request, "queue_cameras.html", principal, **_live_tiles(db))
