"""The composition root: the one place that puts the operator server together from its parts.

``create_app`` opens the store, builds the FastAPI application with the JSON API (``openlfr.api``) and the
console (``openlfr.web``) over the application layer, and runs the background work in its lifespan: the
retention loop and, unless the pipelines are left to ``openlfr worker``, the scheduler of live deployments.
``run_worker`` is the same scheduler without HTTP. Nothing below imports this module.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import sessionmaker
from starlette.concurrency import run_in_threadpool

from openlfr import __version__ as version
from openlfr.alerts.delivery import DeliveryWorker, export_metrics
from openlfr.api.app import install_error_answers, install_http_plumbing, mount_docs
from openlfr.api.deps import ServerState, authenticate
from openlfr.api.metrics import install_metrics
from openlfr.api.routes import router
from openlfr.runtime.background import RetentionLoop
from openlfr.runtime.camera_health import cameras_down
from openlfr.runtime.health import DatabaseProbe
from openlfr.runtime.live_events import EventBoard
from openlfr.runtime.scheduler import Scheduler
from openlfr.runtime.tiles import TileBoard
from openlfr.services import camera_secrets, upload_staging
from openlfr.services.accounts import PrincipalCache
from openlfr.services.audit_log import audit_key
from openlfr.services.metrics import PIPELINES, REGISTRY
from openlfr.services.sink_settings import audit_sinks
from openlfr.settings import Settings, get_settings
from openlfr.store import open_store
from openlfr.web.pages import mount_console, render_error


def create_app(settings: Settings | None = None, *, background: bool = True, pipelines: bool = True) -> FastAPI:
    """The server. ``background`` runs the retention loop; ``pipelines`` also runs the live pipelines."""
    settings = settings or get_settings()
    store = open_store(settings)
    tiles = TileBoard(blur_scene=settings.tile_blur_scene)
    # Committed alerts are counted by the event board's subscription below, not by the pipelines' dispatchers.
    scheduler = Scheduler(store, settings, tiles, count_alerts=False) if pipelines else None
    principals = PrincipalCache()
    probe = DatabaseProbe(store)
    # The outbox's sender: alerts and decisions to the sinks (openlfr.alerts.delivery), in every server process.
    delivery = DeliveryWorker(store, settings.sinks, settings.delivery_retry_max_seconds)
    # Who a token is, remembered briefly: forgotten at each change to accounts or sessions the event board hears
    # of (a commit in this process, a NOTIFY from another), and after each person's write (``api.deps.write``).
    events = EventBoard(store, on_accounts=principals.forget)
    sessions = sessionmaker(store.engine, expire_on_commit=False)
    state = ServerState(settings, store, sessions, audit_key(settings), tiles, events, scheduler, principals)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stoppers: list[Callable[[], None]] = []
        upload_staging.sweep(store, settings)  # what uploads interrupted by a crash left behind
        camera_secrets.seal_stored(store, settings)  # camera URLs stored before they were sealed
        audit_sinks(store, settings)  # where alerts go, and whether with the probe crop, is on the record
        events.start()
        stoppers.append(events.stop)
        delivery.start()
        stoppers.append(delivery.stop)
        # The committed-alert event (this process's commits, other processes' NOTIFY) is the one way delivery, the
        # camera tiles and the alert metrics learn of an alert: woken, marked, counted once.
        stoppers.append(events.subscribe_alerts(lambda _alert: delivery.wake()))
        stoppers.append(
            events.subscribe_alerts(lambda a: tiles.mark_alert(a.deployment_id, a.camera, a.track_id, a.person_ref))
        )
        stoppers.append(
            events.subscribe_alerts(lambda a: PIPELINES.alert_committed(a.deployment_id, a.camera, a.latency_ms))
        )
        stoppers.append(export_metrics(delivery, REGISTRY))
        if background:
            loop = RetentionLoop(store, settings, settings.retention_interval_seconds)
            state.retention = loop  # its last round, for the system page
            loop.start()
            stoppers.append(loop.stop)
        if scheduler is not None:
            scheduler.start()
            stoppers.append(scheduler.stop)
            stoppers.append(PIPELINES.watch_runs(scheduler.report))
        try:
            yield
        finally:
            for stop in reversed(stoppers):
                stop()
            store.close()

    app = FastAPI(
        title="OpenLFR operator server",
        version=version,
        description=(
            "Authorised deployments, live alerts, human adjudication, audit and retention. Log in at /login "
            "(browser: a session cookie, and every write echoes the CSRF token in `X-CSRF-Token`) or send "
            "`Authorization: Bearer TOKEN` (`openlfr users token NAME`)."
        ),
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.server = state  # the one place of the server's state

    @app.get("/health/live", include_in_schema=False)
    def health_live() -> JSONResponse:
        """200 while the process serves requests (a container's liveness check): nothing else, nothing read."""
        return JSONResponse({"status": "live"})

    @app.get("/health", include_in_schema=False)
    async def health(request: Request) -> JSONResponse:
        """503 unless the database reads and writes, every camera of a live deployment streams (or has finished its
        file) and every pipeline of this process runs without trouble.
        Anybody gets the status and whether the database is up; the detail (pipelines, their notes and holders,
        the database's error) only whoever is logged in: it names deployments, cameras, hosts and paths."""

        def look() -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], bool]:
            database = probe()
            runs = scheduler.report() if scheduler is not None else []
            down = []
            if database["ok"]:  # every process's cameras, from the database: a dead camera is never "ok"
                with store.session() as db:
                    down = cameras_down(db)
            return database, runs, down, database["ok"] and not down and (scheduler is None or scheduler.healthy)

        database, runs, down, healthy = await run_in_threadpool(look)
        body: dict[str, Any] = {
            "status": "ok" if healthy else "degraded",
            "database": "up" if database["ok"] else "down",
        }
        if await authenticate(request) is not None:
            sinks = await run_in_threadpool(delivery.status)  # a sink that keeps failing is shown here
            body |= {"database_probe": database, "pipelines": runs, "cameras_down": down, "sinks": sinks}
        return JSONResponse(body, status_code=200 if healthy else 503)

    mount_docs(app)
    app.include_router(router)
    mount_console(app)
    install_error_answers(app, render_error)
    install_http_plumbing(app, settings.max_json_bytes, settings.max_upload_bytes, settings.rfr_max_upload_bytes)
    PIPELINES.watch_store(store)
    install_metrics(app)
    return app


def run_worker(settings: Settings, stop: threading.Event) -> None:
    """The live pipelines of live deployments without the web server, until ``stop`` is set."""
    store = open_store(settings)
    camera_secrets.seal_stored(store, settings)
    audit_sinks(store, settings)
    scheduler = Scheduler(store, settings, TileBoard(blur_scene=settings.tile_blur_scene))
    PIPELINES.watch_store(store)
    forget = PIPELINES.watch_runs(scheduler.report)
    scheduler.start()
    delivery = DeliveryWorker(store, settings.sinks, settings.delivery_retry_max_seconds)
    delivery.start()
    unexport = export_metrics(delivery, REGISTRY)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        delivery.stop()
        unexport()
        scheduler.stop()
        forget()
        store.close()
