"""``GET /metrics`` for admins (a session or an admin's bearer token), and the latency of every request.

The metrics themselves are the application layer's (``openlfr.services.metrics``: counts only, no identity). A
request is labelled by the template of the route it matched (``/api/alerts/{alert_id}``), never by its path, so
no id a client sends ends up in a label; a path no route matched is ``unmatched``.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import Message, Receive, Scope, Send

from openlfr.api.asgi import HttpMiddleware
from openlfr.api.deps import AdminPrincipal
from openlfr.services.metrics import HTTP_REQUEST_SECONDS, REGISTRY

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics(_: AdminPrincipal) -> Response:
    """This process's metrics in the Prometheus text format."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


class RequestLatency(HttpMiddleware):
    """Observes each HTTP request's duration by route template, method and status (a plain ASGI middleware, so
    the route FastAPI matched is in the scope once the request is answered)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500  # an exception with no answer sent

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or ("static" if "app_root_path" in scope else "unmatched")
            HTTP_REQUEST_SECONDS.labels(template, scope["method"], str(status)).observe(time.perf_counter() - started)


def install_metrics(app: FastAPI) -> None:
    app.include_router(router)
    app.add_middleware(RequestLatency)
