"""Server-sent events for the console: ``queue`` whenever the alert queue changes, ``cameras`` when a deployment
goes live or stops or one of its cameras changes state, ``logout`` when the login ends. A stream holds no
database connection while it waits: the server's one :class:`~openlfr.runtime.live_events.EventBoard` follows the
database (alerts raised by a separate worker or another replica too) and every open stream waits on it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from openlfr.api.deps import SESSION_COOKIE, AlertViewerPrincipal, server
from openlfr.runtime.live_events import EventBoard
from openlfr.services import accounts

router = APIRouter(prefix="/api", tags=["live"])

KEEP_ALIVE_S = 15.0  # also how often a stream re-checks that its login still holds (expiry)


def event_board(request: Request) -> EventBoard:
    return server(request).events


@router.get("/events", response_class=StreamingResponse, responses={200: {"content": {"text/event-stream": {}}}})
async def events(request: Request, _: AlertViewerPrincipal) -> StreamingResponse:
    state = server(request)
    board = event_board(request)
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        token, kind = header[7:].strip(), "token"
    else:
        token, kind = request.cookies.get(SESSION_COOKIE, ""), "cookie"

    def still_logged_in() -> bool:
        with state.sessions() as db:
            return accounts.resolve(db, token, kind) is not None

    async def stream() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        shown: dict[str, Any] | None = None
        version, accounts_seen = -1, board.state.accounts
        while True:
            current = await board.next_state(version, KEEP_ALIVE_S)
            if current.version == version or current.accounts != accounts_seen:
                accounts_seen = current.accounts
                if not await run_in_threadpool(still_logged_in):
                    yield "event: logout\ndata: {}\n\n"
                    return
            if current.version == version:
                yield ": keep-alive\n\n"
                continue
            version, signature = current.version, current.signature
            if signature is None:
                continue
            if shown is None or _cameras_part(signature) != _cameras_part(shown):
                yield f"event: cameras\ndata: {json.dumps(_cameras_part(signature))}\n\n"
            if shown is None or _queue_part(signature) != _queue_part(shown):
                yield f"event: queue\ndata: {json.dumps(signature)}\n\n"
            shown = signature

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


def _queue_part(signature: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in signature.items() if k not in ("live", "cameras")}


def _cameras_part(signature: dict[str, Any]) -> dict[str, Any]:
    return {"live": signature["live"], "cameras": signature.get("cameras", [])}
