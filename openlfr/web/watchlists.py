"""The watchlists: their list; a page per watchlist with its people (found by id or name, paged by the server); a
page per person; re-embedding a watchlist.

Each look at a watchlist's people is audited by the same use cases as the API's (``services.watchlists``). Face
pictures are shown to the administrator only, through the API's picture route (which audits each view); expiry
and removal are forms sent to the API (``static/console.js``), removal after a confirmation step.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from openlfr.api.deps import DB, AdminWrite, DrafterPrincipal, DrafterWrite, server
from openlfr.api.paths import PERSON_IN_PATH
from openlfr.clock import utc_now
from openlfr.enrolment.gate import QualityGate
from openlfr.governance.roles import Role
from openlfr.services import reembed, watchlists
from openlfr.services.watchlists import PAGE_SIZE, PersonRow
from openlfr.store.models import CATEGORY_VALUES
from openlfr.vision.engine import model_id_for
from openlfr.web.render import render

router = APIRouter(include_in_schema=False)


def _segment(text: str) -> str:
    return quote(text, safe="")


def _person_link(name: str, person: str) -> str:
    return f"/watchlists/{_segment(name)}/people/{_segment(person)}"


def _photo_link(name: str, person: str, image_id: int) -> str:
    return f"/api/watchlists/{_segment(name)}/people/{_segment(person)}/photos/{image_id}.jpg"


def _row(name: str, row: PersonRow, gate: QualityGate, now: datetime, pictures: bool) -> dict[str, Any]:
    summary = row.photos
    return {
        "row": row,
        "href": _person_link(name, row.reference_id),
        "active": row.expires_at > now,
        "thumb": _photo_link(name, row.reference_id, summary.first_image_id) if pictures and summary else None,
        "below_gate": gate.refusals(summary.weakest) if summary else [],
    }


def _page_link(name: str, query: str, offset: int) -> str:
    params = {"q": query, "offset": offset} if query else {"offset": offset}
    return f"/watchlists/{_segment(name)}?{urlencode(params)}"


@router.get("/watchlists")
def watchlists_page(request: Request, principal: DrafterPrincipal, db: DB) -> HTMLResponse:
    return render(
        request,
        "watchlists.html",
        principal,
        watchlists=watchlists.list_watchlists(db),
        categories=CATEGORY_VALUES,
        model_id=model_id_for(server(request).settings),
        link=lambda name: f"/watchlists/{_segment(name)}",
    )


@router.get("/watchlists/{name}")
def watchlist_page(
    name: str,
    request: Request,
    write: DrafterWrite,
    q: Annotated[str, Query(max_length=100)] = "",
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> HTMLResponse:
    """The people on a watchlist, 50 a page, found by part of their id or name (audited as the API's list is)."""
    query = q.strip()
    pictures = write.principal.role == Role.ADMIN
    page = watchlists.view_people(write.db, write.ctx, name, query, offset, PAGE_SIZE, photos=pictures)
    gate, now = QualityGate.from_settings(server(request).settings), utc_now()
    shown = len(page.people)
    return render(
        request,
        "watchlist.html",
        write.principal,
        watchlist=name,
        query=query,
        people=[_row(name, row, gate, now, pictures) for row in page.people],
        total=page.total,
        first=offset + 1 if shown else 0,
        last=offset + shown if shown else 0,
        previous=_page_link(name, query, max(0, offset - PAGE_SIZE)) if offset > 0 else None,
        next=_page_link(name, query, offset + PAGE_SIZE) if offset + shown < page.total else None,
        pictures=pictures,
    )


@router.get(f"/watchlists/{{name}}/people/{PERSON_IN_PATH}")  # an id may hold a "/": api/paths.py
def person_page(name: str, person: str, request: Request, write: DrafterWrite, remove: bool = False) -> HTMLResponse:
    """One listed person, their details and each photo's quality; for the administrator, their face pictures and
    the forms to bring the expiry forward and (after ``?remove=1`` asks to confirm) to remove them."""
    admin = write.principal.role == Role.ADMIN
    row, photos = watchlists.view_person(write.db, write.ctx, name, person, photos=admin)
    gate = QualityGate.from_settings(server(request).settings)
    return render(
        request,
        "person.html",
        write.principal,
        watchlist=name,
        watchlist_href=f"/watchlists/{_segment(name)}",
        href=_person_link(name, person),
        person=row,
        active=row.expires_at > utc_now(),
        photos=[
            {
                "image": image,
                "src": _photo_link(name, person, image.id) if admin else None,
                "below_gate": gate.refusals(image.quality),
            }
            for image in photos
        ],
        admin=admin,
        confirm_remove=admin and remove,
    )


@router.post("/watchlists/{name}/reembed")
def reembed_watchlist(name: str, request: Request, write: AdminWrite) -> HTMLResponse:
    """The use case of ``openlfr watchlist reembed`` and ``POST /api/watchlists/{name}/reembed`` (same role, CSRF
    check and audit entry), answered as a fragment naming who was re-embedded, who was up to date and who was
    refused with why (the API answers counts)."""
    report = reembed.reembed_watchlist(write.db, write.ctx, name)
    return render(request, "reembed_result.html", write.principal, report=report)
