"""``openlfr serve`` and ``openlfr worker``: the operator server (put together by ``openlfr.server``, the composition
root) and its live pipelines without the web server. Both are imported when the command runs (uvicorn, FastAPI
and the face models are slow to load)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable
from typing import Annotated

import typer

from openlfr.settings import Settings, get_settings


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default from settings: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings: 8400).")] = None,
    pipelines: Annotated[
        bool, typer.Option(help="Run the live pipelines in this process (else leave them to `openlfr worker`).")
    ] = True,
) -> None:
    """Run the operator server: JSON API (/docs), console, retention, and the live pipelines of live deployments."""
    import uvicorn

    from openlfr.server import create_app

    settings = get_settings()
    app = create_app(settings, pipelines=pipelines)
    stop_metrics = _serve_metrics(settings)
    try:
        uvicorn.run(
            app,
            host=host or settings.server_host,
            port=port or settings.server_port,
            log_level="warning",
            access_log=False,  # request lines can carry names and ids; the audit log is the record
            proxy_headers=False,
        )
    finally:
        stop_metrics()


def worker() -> None:
    """Run the live pipelines of live deployments without the web server (alerts meet the server in the database)."""
    from openlfr.server import run_worker

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    settings = get_settings()
    stop_metrics = _serve_metrics(settings)
    typer.echo("worker running; Ctrl-C to stop", err=True)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            run_worker(settings, stop)
    finally:
        stop_metrics()


def _serve_metrics(settings: Settings) -> Callable[[], None]:
    """The metrics on their own address when ``metrics_port`` is set (the server's /metrics needs an admin)."""
    if not settings.metrics_port:
        return lambda: None
    from openlfr.services.metrics import serve_metrics

    return serve_metrics(settings.metrics_host, settings.metrics_port)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("worker")(worker)
