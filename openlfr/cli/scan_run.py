"""``openlfr scan`` running: its pipeline, what the person at the screen (or a program) sees of it, Ctrl-C, and
the summary. Imported by ``openlfr.cli.scan`` once the scan's options and sources are checked."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

import typer
from rich.console import Console
from rich.live import Live
from rich.text import Text
from sqlalchemy import select

from openlfr.alerts.delivery import DeliveryWorker
from openlfr.alerts.record import AlertRecord
from openlfr.alerts.sinks import AlertSink, JsonLinesSink
from openlfr.config_file import SinkSettings
from openlfr.errors import OpenLFRError
from openlfr.services.context import Context
from openlfr.services.scans import ScanRequest, prepare_scan
from openlfr.store.db import Store
from openlfr.store.governance_models import Deployment
from openlfr.stream.runner import CameraState, RunSummary
from openlfr.vision.providers import describe_provider

err = Console(stderr=True, soft_wrap=True, highlight=False)


class Output:
    """What the person (or the program) reading the scan sees: JSON lines, or readable lines."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.lock = threading.Lock()

    def line(self, document: dict[str, Any]) -> None:
        with self.lock:
            sys.stdout.write(json.dumps(document) + "\n")
            sys.stdout.flush()

    def error(self, camera: str, message: str) -> None:
        with self.lock:
            err.print(f"[red]error:[/red] {message}")
        if self.as_json:
            self.line({"type": "error", "camera": camera, "message": message})

    def notice(self, camera: str, message: str) -> None:
        with self.lock:
            err.print(f"[yellow]{message}[/yellow]")


class HumanAlertSink:
    """Readable alert lines on stdout (without --json)."""

    name = "console"

    def __init__(self, output: Output) -> None:
        self.output = output

    def announce(self, alert: AlertRecord) -> None:
        who = f"{alert.person_ref} ({alert.person_name})" if alert.person_name else alert.person_ref
        with self.output.lock:
            typer.echo(
                f"ALERT #{alert.id} {alert.seen_at:%H:%M:%S} camera {alert.camera} track {alert.track_id}: "
                f"{who} score {alert.score:.3f} (threshold {alert.threshold:.3f}), {alert.latency_ms:.0f} ms"
            )

    def close(self, timeout: float) -> None:
        return None


def _interrupts(stop: Callable[[], None]) -> Callable[[], None]:
    """First Ctrl-C stops the cameras gracefully (counts and summary kept); a second one aborts."""
    previous = signal.getsignal(signal.SIGINT)
    pressed = {"count": 0}

    def handler(signum: int, frame: FrameType | None) -> None:
        pressed["count"] += 1
        if pressed["count"] > 1:
            raise KeyboardInterrupt
        err.print("stopping the cameras (Ctrl-C again to abort)")
        stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)

    def restore() -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)

    return restore


def run_scan(
    store: Store, ctx: Context, request: ScanRequest, as_json: bool, adhoc: Mapping[str, SinkSettings | None]
) -> None:
    output = Output(as_json)
    sinks: list[AlertSink] = [JsonLinesSink(sys.stdout, output.lock) if as_json else HumanAlertSink(output)]
    planned = prepare_scan(store, ctx, request, sinks=sinks, on_error=output.error, on_notice=output.notice)
    delivery = _delivery(store, ctx, planned.pipeline.deployment_id, adhoc)
    watchlist, runner, dispatcher = planned.watchlist, planned.pipeline.runner, planned.pipeline.dispatcher
    err.print(f"execution provider: {describe_provider(ctx.settings.execution_provider)}")
    if not as_json:
        err.print(
            f"watchlist {watchlist.name!r}: {watchlist.gallery.person_count} people, {watchlist.size} references; "
            f"{watchlist.note}"
        )
    restore = _interrupts(runner.stop)
    interrupted = False
    live = Live(console=err, refresh_per_second=2, transient=True) if not as_json and err.is_terminal else None
    if live is not None:
        counted = runner.on_stats  # the metrics' (services.live): the display comes on top

        def show(states: dict[str, CameraState]) -> None:
            if counted is not None:
                counted(states)
            live.update(Text(status_line(states)))

        runner.on_stats = show
        live.start()
    try:
        summary = runner.run()
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if live is not None:
            live.stop()
        restore()
        dispatcher.close(timeout=10.0)
        if delivery is not None:
            _finish_delivery(delivery, ctx.settings.scan_delivery_wait_seconds)
    planned.finish(summary, interrupted or runner.stopped)
    _print_summary(output, summary)
    if summary.errors and len(summary.errors) == len(planned.cameras):
        raise OpenLFRError("no camera could be read")


def _delivery(
    store: Store, ctx: Context, deployment_id: int | None, adhoc: Mapping[str, SinkSettings | None]
) -> DeliveryWorker | None:
    """The outbox's sender for this scan's sinks (also resending what an earlier scan left for them)."""
    if deployment_id is None:
        return None
    with store.session() as db:
        names = list(db.scalar(select(Deployment.sinks).where(Deployment.id == deployment_id)) or [])
    known = {**ctx.settings.sinks, **{name: config for name, config in adhoc.items() if config is not None}}
    configs = {name: known[name] for name in names if name in known}
    if not configs:
        return None
    worker = DeliveryWorker(store, configs, ctx.settings.delivery_retry_max_seconds)
    worker.start()
    return worker


def _finish_delivery(worker: DeliveryWorker, wait_s: float) -> None:
    """Wait a little for the sinks, then say plainly what stays pending (sent by the next scan to the same sink,
    or by ``openlfr serve``/``worker`` for a configured sink)."""
    left = worker.drain(None, wait_s)  # this scan's events, and what earlier scans left for the same sinks
    worker.stop(timeout=5.0)
    for sink, count in left.items():
        err.print(
            f"[yellow]{count} event(s) not delivered to {sink} yet: they stay in the outbox and are sent by the "
            "next scan to the same sink (or by openlfr serve/worker, where the sink is configured)[/yellow]"
        )


def status_line(states: dict[str, CameraState]) -> str:
    """One line per camera for the live display: what has been decoded, analysed, dropped, seen, alerted."""
    rows = []
    for name, state in states.items():
        c = state.counters
        rows.append(
            f"{name}: {c.decoded} frames, {c.processed} analysed, {c.dropped} dropped, {c.faces_seen} faces, "
            f"{c.tracks} tracks, {c.alerts} alerts" + (" - stopped" if state.finished else "")
        )
    return "\n".join(rows)


def _print_summary(output: Output, summary: RunSummary) -> None:
    if output.as_json:
        for name, state in summary.cameras.items():
            counters = state.counters.as_dict()
            output.line({"type": "camera", "camera": name, **counters, "error": state.error})
        output.line(summary.line())
        return
    line = summary.line()
    for name, state in summary.cameras.items():
        c = state.counters
        status = f"[red]{state.error}[/red]" if state.error else "ok"
        err.print(
            f"camera {name}: {c.decoded} frames decoded, {c.processed} analysed, {c.dropped} dropped, "
            f"{c.faces_seen} faces seen, {c.tracks} tracks, {c.alerts} alerts - {status}"
        )
    typer.echo(
        f"{line['frames']} frames, {line['faces_seen']} faces seen, {line['tracks']} tracks, {line['alerts']} alerts; "
        f"{line['fps']} frames/s; latency p50 {line['latency_ms_p50']} ms, p95 {line['latency_ms_p95']} ms"
    )
