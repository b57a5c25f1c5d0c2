"""The console's templates (Jinja2) and how a page, or an error page, is rendered."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context

from openlfr.clock import utc_now
from openlfr.governance.adjudication import DECISION_LABELS, OUTCOME_LABELS, Decision, Outcome
from openlfr.governance.roles import Role
from openlfr.services.accounts import Principal

WEB_DIR = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(WEB_DIR / "templates"))
templates.env.globals.update(
    decision_labels={d.value: label for d, label in DECISION_LABELS.items()},
    outcome_labels={o.value: label for o, label in OUTCOME_LABELS.items()},
    decisions=list(Decision),
    outcomes=list(Outcome),
)


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters["when"] = _when


@pass_context
def _local(context: Any, value: datetime | None, seconds: bool = False) -> str:
    """A moment in the zone of the deployments' places (``time_zone``), named: "2027-07-01 09:00 Europe/London"."""
    if value is None:
        return ""
    zone = context.get("zone", "UTC")
    shown = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(ZoneInfo(zone))
    return f"{shown.strftime('%Y-%m-%d %H:%M:%S' if seconds else '%Y-%m-%d %H:%M')} {zone}"


templates.env.filters["local"] = _local


def render(request: Request, name: str, principal: Principal | None, status: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        name,
        {"me": principal, "roles": Role, "now": utc_now(), "zone": _zone(request), **context},
        status_code=status,
    )


def _zone(request: Request) -> str:
    server = getattr(request.app.state, "server", None)
    return server.settings.time_zone if server is not None else "UTC"


def render_error(request: Request, status: int, message: str) -> HTMLResponse:
    principal = getattr(request.state, "principal", None)
    return render(request, "error.html", principal, status=status, status_code=status, message=message)
