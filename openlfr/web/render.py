"""The console's templates (Jinja2) and how a page, or an error page, is rendered."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

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


def render(request: Request, name: str, principal: Principal | None, status: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, {"me": principal, "roles": Role, "now": utc_now(), **context}, status_code=status
    )


def render_error(request: Request, status: int, message: str) -> HTMLResponse:
    principal = getattr(request.state, "principal", None)
    return render(request, "error.html", principal, status=status, status_code=status, message=message)
