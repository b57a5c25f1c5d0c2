"""The operator console: server-rendered pages (Jinja2) over the application layer, one module per page group.

Pages only read. Every action on a page is a small form that ``static/console.js`` sends to the JSON API with
the session's CSRF token, so the role checks, rules and audit entries are the API's, written once. Two actions
show more than the API answers and so call their use case from the console itself, with the same role, CSRF check
and audit entry: re-embedding a watchlist (the people by name, as a fragment) and checking a kept audit anchor.
The alert queue listens to the API's server-sent events and reloads its list (a server-rendered fragment) when it
changes.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from openlfr.web import admin, alert, deployments, login, queue, search, system, watchlists
from openlfr.web.render import WEB_DIR, render_error

__all__ = ["mount_console", "render_error"]

PAGE_GROUPS = (login, queue, alert, search, deployments, admin, watchlists, system)


def mount_console(app: FastAPI) -> None:
    for group in PAGE_GROUPS:
        app.include_router(group.router)
    app.mount("/static", StaticFiles(directory=str(WEB_DIR / "static")), name="static")
