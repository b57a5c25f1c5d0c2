"""The operator console: server-rendered pages (Jinja2) over the same services as the API.

Pages only read. Every action on a page is a small form that ``static/console.js`` sends to the JSON API with
the session's CSRF token, so the role checks, rules and audit entries are the API's, written once. The alert
queue listens to the API's server-sent events and reloads its list (a server-rendered fragment) when it changes.
"""

from __future__ import annotations

import secrets
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.orm import Session

from openlfr.api import alert_source, audit_log, auth, services, sources
from openlfr.api.auth import LoginRefused, Principal
from openlfr.api.deps import (
    ANY_ROLE,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    allow,
    client_ip,
    get_db,
    server,
)
from openlfr.governance import adjudication, deployments
from openlfr.governance.adjudication import DECISION_LABELS, OUTCOME_LABELS, Decision, Outcome
from openlfr.governance.deployments import now_utc
from openlfr.governance.roles import Role
from openlfr.store.governance_models import AuditEntry, Deployment, User

WEB_DIR = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(WEB_DIR / "templates"))
templates.env.globals.update(
    decision_labels={d.value: label for d, label in DECISION_LABELS.items()},
    outcome_labels={o.value: label for o, label in OUTCOME_LABELS.items()},
    decisions=list(Decision),
    outcomes=list(Outcome),
)

A, AU, OP, AD = Role.ADMIN, Role.AUTHORISER, Role.OPERATOR, Role.AUDITOR
LANDING = {A: "/deployments", AU: "/queue", OP: "/queue", AD: "/records"}

pages = APIRouter(include_in_schema=False)


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


templates.env.filters["when"] = _when


def render(request: Request, name: str, principal: Principal | None, status: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, {"me": principal, "roles": Role, "now": now_utc(), **context}, status_code=status
    )


def render_error(request: Request, status: int, message: str) -> HTMLResponse:
    principal = getattr(request.state, "principal", None)
    return render(request, "error.html", principal, status=status, status_code=status, message=message)


def _cookie_secure(request: Request) -> bool:
    return server(request).settings.cookie_secure or request.url.scheme == "https"


def _safe_next(target: str | None) -> str | None:
    """Only a path on this server: never an absolute or scheme-relative URL (an open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parsed = urlparse(target)
    return target if not parsed.scheme and not parsed.netloc else None


# ----- login -----


def _login_page(request: Request, message: str = "", status: int = 200, next_path: str = "") -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", None, status=status, csrf=token, message=message, next=next_path)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=_cookie_secure(request),
        path="/login",
    )
    return response


@pages.get("/login")
def login_form(request: Request, next: str = "") -> HTMLResponse:
    return _login_page(request, next_path=_safe_next(next) or "")


@pages.post("/login")
def login(
    request: Request,
    username: str = Form("", max_length=200),
    password: str = Form("", max_length=2048),
    csrf_token: str = Form("", max_length=200),
    next: str = Form("", max_length=2000),
    db: Session = Depends(get_db),
) -> Response:
    state = server(request)
    if not auth.csrf_matches(request.cookies.get(LOGIN_CSRF_COOKIE, ""), csrf_token) or not csrf_token:
        return _login_page(request, "the login form expired; try again", 400, _safe_next(next) or "")
    ctx = services.Context(state.settings, state.audit_key, username.strip().lower()[:64] or "-", "-")
    try:
        user = auth.check_login(db, state.settings, username, password, client_ip(request), now_utc())
    except LoginRefused as refused:
        ctx.audit(db, "login.failed", f"user:{ctx.actor}", {"ip": client_ip(request), "reason": str(refused)})
        db.commit()
        return _login_page(request, str(refused), refused.status, _safe_next(next) or "")
    lifetime = timedelta(hours=state.settings.session_hours)
    token = auth.open_session(db, user, "cookie", lifetime)
    services.Context(state.settings, state.audit_key, user.username, user.role).audit(
        db, "login", f"user:{user.username}", {"ip": client_ip(request)}
    )
    db.commit()
    response = RedirectResponse(_safe_next(next) or LANDING[Role(user.role)], status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(lifetime.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=_cookie_secure(request),
        path="/",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@pages.post("/logout")
def logout(
    request: Request,
    principal: Principal = Depends(allow(*ANY_ROLE)),
    db: Session = Depends(get_db),
) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        auth.close_session(db, token)
    services.Context.of(server(request).settings, server(request).audit_key, principal).audit(
        db, "logout", f"user:{principal.username}", {}
    )
    db.commit()
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@pages.get("/")
def home(principal: Principal = Depends(allow(*ANY_ROLE))) -> RedirectResponse:
    return RedirectResponse(LANDING[principal.role], status_code=303)


# ----- alert queue -----


def _queue_items(db: Session, request: Request) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
    second = bool(services.console_settings(db, server(request).settings)["require_second_verifier"])
    waiting: list[dict[str, Any]] = []
    done: list[dict[str, Any]] = []
    for alert, review in services.alerts_with_reviews(db, limit=300):
        stage = adjudication.stage(review, second)
        item = {"review": review, "stage": stage, "alert": alert_source.facts(db, alert, review)}
        (done if stage == "closed" else waiting).append(item)
    return waiting, done[:30], second


def _live_tiles(db: Session) -> list[dict[str, Any]]:
    moment = now_utc()
    out = []
    for row in db.scalars(select(Deployment).where(Deployment.status == deployments.Status.AUTHORISED.value)):
        if deployments.may_match(row, moment):
            for camera in row.cameras:
                out.append({"deployment": row, "camera": camera["name"]})
    return out


@pages.get("/queue")
def queue(
    request: Request, principal: Principal = Depends(allow(OP, AU)), db: Session = Depends(get_db)
) -> HTMLResponse:
    waiting, done, second = _queue_items(db, request)
    return render(request, "queue.html", principal, waiting=waiting, done=done, second=second, tiles=_live_tiles(db))


@pages.get("/queue/items")
def queue_items(
    request: Request, principal: Principal = Depends(allow(OP, AU)), db: Session = Depends(get_db)
) -> HTMLResponse:
    waiting, done, second = _queue_items(db, request)
    return render(request, "queue_items.html", principal, waiting=waiting, done=done, second=second)


@pages.get("/queue/cameras")
def queue_cameras(
    request: Request, principal: Principal = Depends(allow(OP, AU)), db: Session = Depends(get_db)
) -> HTMLResponse:
    return render(request, "queue_cameras.html", principal, tiles=_live_tiles(db))


@pages.get("/alerts/{alert_id}")
def alert_page(
    alert_id: int, request: Request, principal: Principal = Depends(allow(OP, AU)), db: Session = Depends(get_db)
) -> HTMLResponse:
    review = services.review_for(db, alert_id)
    alert = alert_source.alert_row(db, alert_id)
    if alert is None:
        raise services.NotFound(f"no alert {alert_id}")
    second = bool(services.console_settings(db, server(request).settings)["require_second_verifier"])
    deployment = services.get_deployment(db, review.deployment_id)
    return render(
        request,
        "alert.html",
        principal,
        review=review,
        alert=alert_source.facts(db, alert, review),
        stage=adjudication.stage(review, second),
        second=second,
        deployment=deployment,
    )


# ----- deployments and records -----


@pages.get("/deployments")
def deployments_page(
    request: Request, principal: Principal = Depends(allow(*ANY_ROLE)), db: Session = Depends(get_db)
) -> HTMLResponse:
    rows = db.scalars(select(Deployment).order_by(Deployment.starts_at.desc(), Deployment.id.desc())).all()
    moment = now_utc()
    return render(
        request,
        "deployments.html",
        principal,
        rows=[(r, deployments.phase(r, moment).value) for r in rows],
        watchlists=sources.list_watchlists(db, moment) if principal.role in (A, AU, OP) else [],
        can_draft=principal.role in (A, AU, OP),
    )


@pages.get("/deployments/{deployment_id}")
def deployment_page(
    deployment_id: int,
    request: Request,
    principal: Principal = Depends(allow(*ANY_ROLE)),
    db: Session = Depends(get_db),
) -> HTMLResponse:
    row = services.get_deployment(db, deployment_id)
    moment = now_utc()
    reviews = services.alerts_with_reviews(db, row.id, limit=5000, newest_first=False)
    return render(
        request,
        "deployment.html",
        principal,
        d=row,
        phase=deployments.phase(row, moment).value,
        permission=deployments.may_match(row, moment),
        record=services.record_of(db, row),
        reviews=reviews,
        sees_alerts=principal.role in (OP, AU),
    )


@pages.get("/records")
def records_page(
    request: Request,
    since: date | None = None,
    until: date | None = None,
    principal: Principal = Depends(allow(*ANY_ROLE)),
    db: Session = Depends(get_db),
) -> HTMLResponse:
    from openlfr.api.routes import _period

    start, stop = _period(since, until)
    rows = services.records_between(db, start, stop)
    return render(
        request,
        "records.html",
        principal,
        rows=rows,
        since=start.date().isoformat(),
        until=(stop - timedelta(days=1)).date().isoformat(),
    )


# ----- administration and audit -----


@pages.get("/audit")
def audit_page(
    request: Request, principal: Principal = Depends(allow(AD, A)), db: Session = Depends(get_db)
) -> HTMLResponse:
    entries = db.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(300)).all()
    verdict = audit_log.verify(db, server(request).audit_key)
    return render(request, "audit.html", principal, entries=entries, verdict=verdict)


@pages.get("/users")
def users_page(
    request: Request, principal: Principal = Depends(allow(A)), db: Session = Depends(get_db)
) -> HTMLResponse:
    users = db.scalars(select(User).order_by(User.username)).all()
    return render(request, "users.html", principal, users=users)


@pages.get("/settings")
def settings_page(
    request: Request, principal: Principal = Depends(allow(A)), db: Session = Depends(get_db)
) -> HTMLResponse:
    state = server(request)
    return render(
        request,
        "settings.html",
        principal,
        values=services.console_settings(db, state.settings),
        retention={
            "snapshot_hours": state.settings.snapshot_retention_seconds / 3600,
            "probe_days": state.settings.probe_retention_seconds / 86400,
        },
    )


@pages.get("/watchlists")
def watchlists_page(
    request: Request, principal: Principal = Depends(allow(A, AU, OP)), db: Session = Depends(get_db)
) -> HTMLResponse:
    from openlfr.store.models import CATEGORY_VALUES

    return render(
        request,
        "watchlists.html",
        principal,
        watchlists=sources.list_watchlists(db, now_utc()),
        categories=CATEGORY_VALUES,
    )


def mount_console(app: FastAPI) -> None:
    app.include_router(pages)
    app.mount("/static", StaticFiles(directory=str(WEB_DIR / "static")), name="static")
