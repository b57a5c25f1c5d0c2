"""Logging in and out of the console, and the landing page of each role."""

from __future__ import annotations

import secrets
from datetime import timedelta
from urllib.parse import urlparse

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from openlfr.api.app import status_of
from openlfr.api.deps import DB, LOGIN_CSRF_COOKIE, SESSION_COOKIE, AnyoneWrite, AnyPrincipal, client_ip, server
from openlfr.clock import utc_now
from openlfr.errors import LoginRefused
from openlfr.governance.roles import Role
from openlfr.services import accounts
from openlfr.services.context import Context
from openlfr.web.render import render

# Each role's home: where its work waits. An authoriser's is the drafts waiting for their decision.
LANDING = {
    Role.ADMIN: "/deployments",
    Role.AUTHORISER: "/deployments?state=draft",
    Role.OPERATOR: "/queue",
    Role.AUDITOR: "/records",
}

router = APIRouter(include_in_schema=False)


def _cookie_secure(request: Request) -> bool:
    return server(request).settings.cookie_secure or request.url.scheme == "https"


def _safe_next(target: str | None) -> str | None:
    """Only a path on this server: never an absolute or scheme-relative URL (an open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parsed = urlparse(target)
    return target if not parsed.scheme and not parsed.netloc else None


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


@router.get("/login")
def login_form(request: Request, next: str = "") -> HTMLResponse:
    return _login_page(request, next_path=_safe_next(next) or "")


@router.post("/login")
def login(
    request: Request,
    db: DB,
    username: str = Form("", max_length=200),
    password: str = Form("", max_length=2048),
    csrf_token: str = Form("", max_length=200),
    next: str = Form("", max_length=2000),
) -> Response:
    state = server(request)
    if not accounts.csrf_matches(request.cookies.get(LOGIN_CSRF_COOKIE, ""), csrf_token) or not csrf_token:
        return _login_page(request, "the login form expired; try again", 400, _safe_next(next) or "")
    ctx = Context(state.settings, state.audit_key, username.strip().lower()[:64] or "-", "-")
    try:
        user = accounts.check_login(db, state.settings, username, password, client_ip(request), utc_now())
    except LoginRefused as refused:
        ctx.audit(db, "login.failed", f"user:{ctx.actor}", {"ip": client_ip(request), "reason": str(refused)})
        db.commit()
        return _login_page(request, str(refused), status_of(refused), _safe_next(next) or "")
    lifetime = timedelta(hours=state.settings.session_hours)
    token = accounts.open_session(db, user, "cookie", lifetime)
    Context(state.settings, state.audit_key, user.username, user.role).audit(
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


@router.post("/logout")
def logout(request: Request, write: AnyoneWrite) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        accounts.close_session(write.db, token)
    write.ctx.audit(write.db, "logout", f"user:{write.principal.username}", {})
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/")
def home(principal: AnyPrincipal) -> RedirectResponse:
    return RedirectResponse(LANDING[principal.role], status_code=303)
