"""``openlfr scan``: watch video sources for the people on a watchlist. ``register(app)`` adds it to the CLI."""

from __future__ import annotations

import json
import signal
import sys
import threading
import tomllib
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.text import Text

from openlfr.alerts.database import DeliveryLedger
from openlfr.alerts.record import AlertRecord
from openlfr.alerts.sinks import AlertSink, JsonLinesSink, MqttSink, WebhookSink
from openlfr.errors import OpenLFRError
from openlfr.services import metrics
from openlfr.services.context import Context
from openlfr.services.live import CameraDefaults, camera_of, roi_box
from openlfr.services.scans import ScanRequest, prepare_scan
from openlfr.settings import Settings, get_settings
from openlfr.store.db import Store, open_store
from openlfr.stream.runner import CameraState, RunSummary
from openlfr.stream.source import CameraConfig, default_camera_name
from openlfr.vision.types import Box
from openlfr.watchlist.calibration import parse_rate

err = Console(stderr=True, soft_wrap=True, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("scan")(scan)


def parse_roi(text: str | None) -> Box | None:
    return roi_box(text)


def parse_evidence(text: str | None, settings: Settings) -> tuple[int, int]:
    if not text:
        return settings.stream.evidence_k, settings.stream.evidence_n
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise OpenLFRError(f"evidence is K/N (K of the last N samples), got {text!r}") from None
    if not 1 <= k <= n:
        raise OpenLFRError(f"evidence {text!r}: need 1 <= K <= N")
    return k, n


def cameras_from(
    sources: list[str], cameras_file: Path | None, fps_cap: float, min_face: int | None, roi: Box | None
) -> list[CameraConfig]:
    """Cameras from the command line (defaults for all) and from a TOML file (``[[camera]]`` tables)."""
    defaults = CameraDefaults(fps_cap=fps_cap, roi=roi, min_face_px=min_face or 0)
    cameras: list[CameraConfig] = []
    names: set[str] = set()
    if cameras_file is not None:
        try:
            document = tomllib.loads(cameras_file.read_text())
        except FileNotFoundError:
            raise OpenLFRError(f"{cameras_file}: no such file") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise OpenLFRError(f"{cameras_file}: not a valid TOML file ({exc})") from None
        for index, entry in enumerate(document.get("camera", []), 1):
            if not isinstance(entry, dict) or "url" not in entry:
                raise OpenLFRError(f"{cameras_file}: camera {index} needs a url")
            name = str(entry.get("name") or default_camera_name(str(entry["url"]), names))
            if name in names:
                raise OpenLFRError(f"{cameras_file}: two cameras are named {name!r}")
            names.add(name)
            cameras.append(camera_of({**entry, "name": name}, defaults, url_key="url"))
    for url in sources:
        name = default_camera_name(url, names)
        names.add(name)
        cameras.append(camera_of({"name": name, "url": url}, defaults, url_key="url"))
    return cameras


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


def scan(
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            help="Video files, stream URLs (rtsp://, http://, ...) or local cameras (/dev/video0, camera:0)."
        ),
    ] = None,
    watchlist: Annotated[str | None, typer.Option("--watchlist", help="The watchlist to search for.")] = None,
    threshold: Annotated[
        float | None, typer.Option("--threshold", min=0.0, max=1.0, help="Alert at this match score.")
    ] = None,
    target_fpir: Annotated[
        str | None,
        typer.Option(
            "--target-fpir", help="Or: a false-alert rate per face ('1e-3', '1 in 33000'); sets the threshold."
        ),
    ] = None,
    realtime: Annotated[
        bool, typer.Option("--realtime", help="Play files at their own pace, as a camera would.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line: alerts, then a summary.")] = False,
    cameras_file: Annotated[
        Path | None,
        typer.Option("--cameras", help="TOML file of camera tables (name, url, fps_cap, roi, min_face_px)."),
    ] = None,
    webhook: Annotated[
        list[str] | None, typer.Option("--webhook", help="POST each alert to this URL (repeatable).")
    ] = None,
    mqtt: Annotated[
        list[str] | None,
        typer.Option(
            "--mqtt", help="Publish each alert to this MQTT broker: HOST:PORT/TOPIC (port and topic optional)."
        ),
    ] = None,
    fps_cap: Annotated[
        float, typer.Option("--fps-cap", min=0.0, help="Analyse at most this many frames a second.")
    ] = 0.0,
    min_face: Annotated[
        int | None, typer.Option("--min-face", min=1, help="Ignore faces shorter than this (px).")
    ] = None,
    roi: Annotated[str | None, typer.Option("--roi", help="Region of interest LEFT,TOP,RIGHT,BOTTOM (px).")] = None,
    evidence: Annotated[
        str | None, typer.Option("--evidence", help="K/N: K of a track's last N samples (2/5).")
    ] = None,
    deployment: Annotated[
        int | None, typer.Option("--deployment", help="Run inside this authorised deployment (its watchlist snapshot).")
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            help="Answer Prometheus metrics (counts only) on this port of metrics_host (127.0.0.1) while scanning.",
        ),
    ] = None,
) -> None:
    """Watch video for the people on a watchlist: one alert per person per sighting, nothing kept of anyone else."""
    settings = get_settings()
    sources = list(sources or [])
    if threshold is not None and target_fpir is not None:
        raise OpenLFRError("give --threshold or --target-fpir, not both")
    if deployment is None and not watchlist:
        raise OpenLFRError("say which watchlist to search: --watchlist NAME (or --deployment ID)")
    if deployment is not None and (watchlist or threshold is not None or target_fpir is not None):
        raise OpenLFRError("--deployment brings its own watchlist and threshold: drop --watchlist/--threshold")
    area = parse_roi(roi)
    k, n = parse_evidence(evidence, settings)
    cameras = cameras_from(sources, cameras_file, fps_cap, min_face, area)
    if not cameras and deployment is None:
        raise OpenLFRError("no sources: give video files or stream URLs (or --cameras FILE)")
    # --evidence is this run's stream setting: the pipeline reads it from the settings, as on every other path.
    settings = settings.model_copy(
        update={"stream": settings.stream.model_copy(update={"evidence_k": k, "evidence_n": n})}
    )
    request = ScanRequest(
        cameras=cameras,
        defaults=CameraDefaults(fps_cap=fps_cap, roi=area, min_face_px=min_face or 0),
        watchlist=watchlist,
        threshold=threshold,
        target_fpir=parse_rate(target_fpir) if target_fpir is not None else None,
        deployment_id=deployment,
        realtime=realtime,
        flags={
            "watchlist": watchlist,
            "threshold": threshold,
            "target_fpir": target_fpir,
            "realtime": realtime,
            "webhook": webhook or [],
            "mqtt": mqtt or [],
            "evidence": f"{k}/{n}",
        },
    )
    port = settings.metrics_port if metrics_port is None else metrics_port
    stop_metrics = metrics.serve_metrics(settings.metrics_host, port) if port else None
    store = open_store(settings)
    try:
        _run_scan(store, Context.local(settings), request, as_json, webhook or [], mqtt or [])
    finally:
        store.close()
        if stop_metrics is not None:
            stop_metrics()


def _run_scan(
    store: Store, ctx: Context, request: ScanRequest, as_json: bool, webhooks: list[str], brokers: list[str]
) -> None:
    output = Output(as_json)
    ledger = DeliveryLedger(store)
    sinks: list[AlertSink] = [JsonLinesSink(sys.stdout, output.lock) if as_json else HumanAlertSink(output)]
    sinks += [WebhookSink(url, ledger) for url in webhooks]
    sinks += [MqttSink(address, ledger) for address in brokers]
    planned = prepare_scan(store, ctx, request, sinks=sinks, on_error=output.error, on_notice=output.notice)
    watchlist, runner, dispatcher = planned.watchlist, planned.pipeline.runner, planned.pipeline.dispatcher
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
    planned.finish(summary, interrupted or runner.stopped)
    _print_summary(output, summary)
    if summary.errors and len(summary.errors) == len(planned.cameras):
        raise OpenLFRError("no camera could be read")


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
