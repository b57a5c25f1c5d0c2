"""Server-sent events for the console: ``queue`` whenever the alert queue changes, ``cameras`` when a deployment
goes live or stops or one of its cameras changes state, ``logout`` when the login ends; and per deployment,
``progress`` of a retrospective search as its footage is analysed, for any role. A stream holds no
database connection while it waits: the server's one :class:`~openlfr.runtime.live_events.EventBoard` follows the
database (alerts raised by a separate worker or another replica too) and every open stream waits on it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from openlfr.api.deps import SESSION_COOKIE, AlertViewerPrincipal, AnyPrincipal, server
from openlfr.api.schemas import DeploymentOut
from openlfr.runtime.live_events import BoardState, EventBoard
from openlfr.services import accounts, deployments

router = APIRouter(prefix="/api", tags=["live"])

KEEP_ALIVE_S = 15.0  # also how often a stream re-checks that its login still holds (expiry)


def event_board(request: Request) -> EventBoard:
    return server(request).events


def login_check(request: Request) -> Callable[[], bool]:
    """Whether the login a stream was opened with still holds (a short session each time it is asked)."""
    state = server(request)
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        token, kind = header[7:].strip(), "token"
    else:
        token, kind = request.cookies.get(SESSION_COOKIE, ""), "cookie"

    def still_logged_in() -> bool:
        with state.sessions() as db:
            return accounts.resolve(db, token, kind) is not None

    return still_logged_in


STREAM: dict[int | str, dict[str, Any]] = {200: {"content": {"text/event-stream": {}}}}
LOGOUT = "event: logout\ndata: {}\n\n"
KEEP_ALIVE = ": keep-alive\n\n"


class Watch:
    """Where one open stream is on the event board: the board's version it last saw, and the accounts' version
    its login was last checked at."""

    def __init__(self, request: Request, version: int = -1) -> None:
        self.board = event_board(request)
        self.still_logged_in = login_check(request)
        self.version, self.accounts = version, self.board.state.accounts

    async def next(self) -> BoardState | str:
        """The board's next state, or the line to send instead: ``LOGOUT`` once the login has ended (checked when
        the accounts change and at every keep-alive), ``KEEP_ALIVE`` when nothing moved for a while."""
        current = await self.board.next_state(self.version, KEEP_ALIVE_S)
        if current.version == self.version or current.accounts != self.accounts:
            self.accounts = current.accounts
            if not await run_in_threadpool(self.still_logged_in):
                return LOGOUT
        if current.version == self.version:
            return KEEP_ALIVE
        self.version = current.version
        return current


def event_stream(lines: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        lines, media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


@router.get("/events", response_class=StreamingResponse, responses=STREAM)
async def events(request: Request, _: AlertViewerPrincipal) -> StreamingResponse:
    watch = Watch(request)

    async def stream() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        shown: dict[str, Any] | None = None
        while True:
            current = await watch.next()
            if isinstance(current, str):
                yield current
                if current == LOGOUT:
                    return
                continue
            signature = current.signature
            if signature is None:
                continue
            if shown is None or _cameras_part(signature) != _cameras_part(shown):
                yield f"event: cameras\ndata: {json.dumps(_cameras_part(signature))}\n\n"
            if shown is None or _queue_part(signature) != _queue_part(shown):
                yield f"event: queue\ndata: {json.dumps(signature)}\n\n"
            shown = signature

    return event_stream(stream())


def _queue_part(signature: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in signature.items() if k not in ("live", "cameras", "searches")}


def _cameras_part(signature: dict[str, Any]) -> dict[str, Any]:
    return {"live": signature["live"], "cameras": signature.get("cameras", [])}


def _progress(request: Request, deployment_id: int) -> dict[str, Any]:
    with server(request).sessions() as db:
        shown = DeploymentOut.model_validate(deployments.get_deployment(db, deployment_id))
    fields = ("id", "kind", "phase", "media_seconds", "media_done_seconds", "progress", "coverage")
    answer = shown.model_dump(mode="json", include=set(fields))
    answer["started"] = shown.processing_started_at is not None
    answer["finished"] = shown.processing_finished_at is not None
    return answer


@router.get("/deployments/{deployment_id}/events", response_class=StreamingResponse, responses=STREAM)
async def deployment_events(deployment_id: int, request: Request, _: AnyPrincipal) -> StreamingResponse:
    """A retrospective search's ``progress`` (seconds of its footage analysed, and whether it has finished): at
    once, then each time it moves; once it has finished (or for a live deployment, which has none) the stream
    ends. ``logout`` when the login ends. Like ``/api/events`` it waits on the server's one event board."""
    watch = Watch(request, event_board(request).state.version)
    first = await run_in_threadpool(_progress, request, deployment_id)  # an unknown deployment: 404, not a stream

    async def stream() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        shown = first
        yield f"event: progress\ndata: {json.dumps(shown)}\n\n"
        while not shown["finished"] and shown["kind"] == "retrospective":
            current = await watch.next()
            if isinstance(current, str):
                yield current
                if current == LOGOUT:
                    return
                continue
            now = await run_in_threadpool(_progress, request, deployment_id)
            if now != shown:
                shown = now
                yield f"event: progress\ndata: {json.dumps(shown)}\n\n"

    return event_stream(stream())
