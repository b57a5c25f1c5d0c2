"""``openlfr serve`` and ``openlfr worker``: the operator server (put together by ``openlfr.server``, the composition
root) and its live pipelines without the web server. Both are imported when the command runs (uvicorn, FastAPI
and the face models are slow to load). Each says first what it runs with, on one line of stderr."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer

from openlfr import __version__
from openlfr.cli import logs
from openlfr.cli.common import get_settings

if TYPE_CHECKING:
    from openlfr.settings import Settings


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default from settings: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default from settings: 8400).")] = None,
    pipelines: Annotated[
        bool, typer.Option(help="Run the live pipelines in this process (else leave them to `openlfr worker`).")
    ] = True,
) -> None:
    """Run the operator server: JSON API (/docs), console, retention, and the live pipelines of live deployments."""
    settings = get_settings()
    host = host or settings.server_host
    port = port or settings.server_port
    cameras = live_cameras(settings) if pipelines else "none here (left to `openlfr worker`)"
    typer.echo(startup_line(f"serving http://{host}:{port}", settings, cameras), err=True)

    import uvicorn

    from openlfr.server import create_app

    app = create_app(settings, pipelines=pipelines)
    stop_metrics = _serve_metrics(settings)
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="warning",
            log_config=logs.uvicorn_log_config(),  # None under --log-format json: uvicorn logs through the root's
            access_log=False,  # request lines can carry names and ids; the audit log is the record
            proxy_headers=False,
        )
    finally:
        stop_metrics()


def worker() -> None:
    """Run the live pipelines of live deployments without the web server (alerts meet the server in the database)."""
    settings = get_settings()
    name = settings.worker_name or socket.gethostname()
    typer.echo(startup_line(f"worker {name}", settings, live_cameras(settings)), err=True)

    from openlfr.server import run_worker

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop_metrics = _serve_metrics(settings)
    typer.echo("worker running; Ctrl-C to stop", err=True)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            run_worker(settings, stop)
    finally:
        stop_metrics()


def startup_line(what: str, settings: Settings, cameras: str) -> str:
    """What a long-running command runs with, for the person starting it and the service log: the version, what
    it does (its URL), the database (never its password), the data directory, the face models' execution provider
    (refused here, before anything starts, when this ONNX Runtime lacks it) and the cameras it may run."""
    from openlfr.vision.providers import describe_provider  # ONNX Runtime: slow to import for the other commands

    return (
        f"openlfr {__version__} {what} · database {database_shown(settings.resolved_database_url())} · "
        f"data {settings.data_dir} · execution provider {describe_provider(settings.execution_provider)} · "
        f"cameras: {cameras}"
    )


def database_shown(url: str) -> str:
    """The database's kind and where it is: ``sqlite /path/openlfr.db``, ``postgresql user@host:port/name``. The
    password and the query (which may carry one) are left out."""
    kind, _, rest = url.partition("://")
    kind = kind.split("+", 1)[0]
    if kind == "sqlite":  # sqlite:///relative.db, sqlite:////absolute.db, sqlite:// (in memory)
        return f"sqlite {rest[1:].split('?', 1)[0] or 'in memory'}"
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a URL urllib can read: its kind alone
        return kind
    user = f"{parts.username}@" if parts.username else ""
    return f"{kind} {user}{parts.hostname or ''}{port}{parts.path}"


def live_cameras(settings: Settings) -> str:
    hosts = settings.camera_allowed_hosts.strip()
    return "those of live deployments, from " + (hosts or "any host")


def _serve_metrics(settings: Settings) -> Callable[[], None]:
    """The metrics on their own address when ``metrics_port`` is set (the server's /metrics needs an admin)."""
    if not settings.metrics_port:
        return lambda: None
    from openlfr.services.metrics import serve_metrics

    return serve_metrics(settings.metrics_host, settings.metrics_port)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("worker")(worker)
