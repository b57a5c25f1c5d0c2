"""The system page (admins): the version, the database, the data directory, the live cameras and this server's
pipelines with their states, the sinks and their backlog, retention's last run and the audit chain's state, read
through ``openlfr.runtime.overview``. It shows no secret: addresses are redacted, sinks shown by host only."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from openlfr.api.deps import DB, AdminPrincipal, server
from openlfr.runtime.overview import system_overview
from openlfr.web.render import render

router = APIRouter(include_in_schema=False)


@router.get("/system")
def system_page(request: Request, principal: AdminPrincipal, db: DB) -> HTMLResponse:
    state = server(request)
    overview = system_overview(db, state.settings, state.store.engine, state.scheduler, state.retention)
    return render(request, "system.html", principal, o=overview)
