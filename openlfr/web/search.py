"""The photo search page: an upload form sent to ``POST /api/search`` by ``static/search.js``, which shows the
candidates with each one's reference picture. The page itself only reads (the watchlists to choose from)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from openlfr.api.deps import DB, PhotoSearcherPrincipal
from openlfr.services import watchlists
from openlfr.services.photo_search import MAX_TOP, MIN_REASON_CHARS
from openlfr.web.render import render

router = APIRouter(include_in_schema=False)


@router.get("/search")
def search_page(request: Request, principal: PhotoSearcherPrincipal, db: DB) -> HTMLResponse:
    listed = [w for w in watchlists.list_watchlists(db) if w.active_people > 0]
    return render(request, "search.html", principal, watchlists=listed, min_reason=MIN_REASON_CHARS, max_top=MAX_TOP)
