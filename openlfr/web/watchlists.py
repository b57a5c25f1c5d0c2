"""The watchlists: their list, and re-embedding one."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from openlfr.api.deps import DB, AdminWrite, DrafterPrincipal, server
from openlfr.services import reembed, watchlists
from openlfr.store.models import CATEGORY_VALUES
from openlfr.vision.engine import model_id_for
from openlfr.web.render import render

router = APIRouter(include_in_schema=False)


@router.get("/watchlists")
def watchlists_page(request: Request, principal: DrafterPrincipal, db: DB) -> HTMLResponse:
    return render(
        request,
        "watchlists.html",
        principal,
        watchlists=watchlists.list_watchlists(db),
        categories=CATEGORY_VALUES,
        model_id=model_id_for(server(request).settings),
    )


@router.post("/watchlists/{name}/reembed")
def reembed_watchlist(name: str, request: Request, write: AdminWrite) -> HTMLResponse:
    """The use case of ``openlfr watchlist reembed`` and ``POST /api/watchlists/{name}/reembed`` (same role, CSRF
    check and audit entry), answered as a fragment naming who was re-embedded, who was up to date and who was
    refused with why (the API answers counts)."""
    report = reembed.reembed_watchlist(write.db, write.ctx, name)
    return render(request, "reembed_result.html", write.principal, report=report)
