"""Server-sent events for the console: ``queue`` whenever the alert queue changes, ``cameras`` when a deployment
goes live or stops. The database is the source, so alerts raised by a separate worker are announced too."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from openlfr.api.deps import SESSION_COOKIE, AlertViewerPrincipal, server
from openlfr.services import accounts
from openlfr.services.deployments import live_deployments
from openlfr.store.alert_models import Alert
from openlfr.store.governance_models import AlertReview

router = APIRouter(prefix="/api", tags=["live"])

POLL_S = 0.5
KEEP_ALIVE_S = 15.0


def queue_signature(db: Session) -> dict[str, Any]:
    """What changes when the queue changes: a new alert, or a decision, check or outcome on one."""
    alerts = db.execute(
        select(func.count(), func.max(Alert.id)).select_from(Alert).where(Alert.deployment_id.is_not(None))
    ).one()
    reviews = db.execute(
        select(func.count(AlertReview.decision), func.count(AlertReview.verified_by), func.count(AlertReview.outcome))
    ).one()
    return {
        "alerts": alerts[0],
        "latest": alerts[1],
        "decided": reviews[0],
        "verified": reviews[1],
        "outcomes": reviews[2],
        "live": sorted(row.id for row in live_deployments(db)),
    }


@router.get("/events", response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
async def events(request: Request, _: AlertViewerPrincipal) -> StreamingResponse:
    state = server(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    token, kind = (cookie, "cookie") if cookie else (request.headers.get("authorization", "")[7:], "token")

    def poll() -> dict[str, Any] | None:
        with state.sessions() as db:
            if accounts.resolve(db, token, kind) is None:
                return None  # logged out or expired: stop streaming
            return queue_signature(db)

    async def stream() -> AsyncIterator[str]:
        last: dict[str, Any] | None = None
        idle = 0.0
        yield "retry: 2000\n\n"
        while not await request.is_disconnected():
            current = await run_in_threadpool(poll)
            if current is None:
                yield "event: logout\ndata: {}\n\n"
                return
            if current != last:
                if last is None or current["live"] != last["live"]:
                    yield f"event: cameras\ndata: {json.dumps(current['live'])}\n\n"
                if last is None or _queue_part(current) != _queue_part(last):
                    yield f"event: queue\ndata: {json.dumps(current)}\n\n"
                last, idle = current, 0.0
            elif idle >= KEEP_ALIVE_S:
                yield ": keep-alive\n\n"
                idle = 0.0
            await asyncio.sleep(POLL_S)
            idle += POLL_S

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


def _queue_part(signature: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in signature.items() if k != "live"}
