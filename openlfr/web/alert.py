"""The page of one alert, where an operator decides: the score in words (how many strangers score this high), when
it was seen and how long ago, the probe and the track's best looks beside the person's watchlist pictures, and the
steps of the review, each with an optional note, a confirmation for the weighty ones and an undo for 30 s."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from openlfr.api.deps import DB, AlertViewerPrincipal, server
from openlfr.clock import utc, utc_now
from openlfr.governance import adjudication
from openlfr.services import alert_source, reviews
from openlfr.services.console import require_second_verifier
from openlfr.services.deployments import get_deployment
from openlfr.web.render import render

router = APIRouter(include_in_schema=False)


def one_in(rate: float | None) -> str | None:
    """A false-match rate as a person reads it: "48,000" for 2.1e-5 (two significant figures, never 0)."""
    if rate is None or rate <= 0:
        return None
    strangers = 1.0 / rate
    return f"{max(1, round(strangers, -max(0, len(str(int(strangers))) - 2))):,.0f}"


def ago_text(seconds: float) -> str:
    """How long ago, as the page says it (``static/alert.js`` keeps it up to date): "42 s ago", "3 min 5 s ago"."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole} s ago"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s ago"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60} min ago"
    days = whole // 86400
    return f"{days} day ago" if days == 1 else f"{days} days ago"


@router.get("/alerts/{alert_id}")
def alert_page(alert_id: int, request: Request, principal: AlertViewerPrincipal, db: DB) -> HTMLResponse:
    alert, review = reviews.alert_and_review(db, alert_id)
    settings = server(request).settings
    second = require_second_verifier(db, settings)
    facts = alert_source.facts(db, alert, review, settings)
    # Recorded footage: how long ago it was processed (when it was filmed is the footage's own time, shown too).
    moment = review.alert_at if facts.media is not None else alert.seen_at
    return render(
        request,
        "alert.html",
        principal,
        review=review,
        alert=facts,
        seen_at=alert.seen_at,
        ago=ago_text((utc_now() - utc(moment)).total_seconds()),
        one_in=one_in(facts.false_match_rate),
        stage=adjudication.stage(review, second),
        second=second,
        undo_until=reviews.undo_until(review, principal.username),
        last_step=adjudication.last_step(review),
        deployment=get_deployment(db, review.deployment_id),
    )
