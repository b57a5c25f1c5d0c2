"""``openlfr scan``: watch video sources for the people on a watchlist. ``register(app)`` adds it to the CLI.

The options are read and the sources checked here; the scan itself runs in ``openlfr.cli.scan_run``, imported
when it starts (the face models and the pipeline are slow to load, and a scan that cannot start loads neither)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from openlfr.cli.common import get_settings
from openlfr.errors import OpenLFRError
from openlfr.text import escaped, visible_text
from openlfr.urls import redact_url

if TYPE_CHECKING:
    from openlfr.config_file import SinkSettings
    from openlfr.settings import Settings
    from openlfr.stream.source import CameraConfig
    from openlfr.vision.types import Box


def register(app: typer.Typer) -> None:
    app.command("scan")(scan)


def parse_roi(text: str | None) -> Box | None:
    from openlfr.services.live import roi_box

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


def scan_sinks(
    settings: Settings, names: list[str], webhooks: list[str], brokers: list[str]
) -> dict[str, SinkSettings | None]:
    """The sinks of a scan by name: configured ones (``--sink``, None here: the settings hold them), and those of
    the addresses given on the command line (named by ``outbox.adhoc_name``: a later scan naming the same address
    resends what this one could not deliver)."""
    from openlfr.alerts.outbox import adhoc_name, adhoc_sink
    from openlfr.alerts.sinks import parse_broker

    for name in names:
        if name not in settings.sinks:
            known = ", ".join(sorted(settings.sinks)) or "none"
            raise OpenLFRError(f"no sink named {name!r} is configured (OPENLFR_SINKS; configured: {known})")
    sinks: dict[str, SinkSettings | None] = dict.fromkeys(names)
    for url in webhooks:
        if not url.startswith(("http://", "https://")):
            raise OpenLFRError(f"a webhook URL starts with http:// or https://, got {redact_url(url)!r}")
        sinks[adhoc_name("webhook", url)] = adhoc_sink("webhook", url)
    for address in brokers:
        parse_broker(address)
        sinks[adhoc_name("mqtt", address)] = adhoc_sink("mqtt", address)
    return sinks


def cameras_from(
    sources: list[str], cameras_file: Path | None, fps_cap: float, min_face: int | None, roi: Box | None
) -> list[CameraConfig]:
    """Cameras from the command line (defaults for all) and from a TOML file (``[[camera]]`` tables)."""
    from openlfr.services.live import CameraDefaults, camera_of
    from openlfr.stream.source import default_camera_name

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
            given = entry.get("name")
            if given:
                visible_text(str(given), f"{cameras_file}: the name of camera {index}")
            # A name made from a file's or a stream's own name is shown escaped, not refused: it was not chosen.
            name = str(given or escaped(default_camera_name(str(entry["url"]), names)))
            if name in names:
                raise OpenLFRError(f"{cameras_file}: two cameras are named {name!r}")
            names.add(name)
            cameras.append(camera_of({**entry, "name": name}, defaults, url_key="url"))
    for url in sources:
        name = escaped(default_camera_name(url, names))
        names.add(name)
        cameras.append(camera_of({"name": name, "url": url}, defaults, url_key="url"))
    return cameras


def check_sources(cameras: list[CameraConfig]) -> None:
    """Refuse a scan none of whose sources can be read, before a model is loaded or the scan recorded: a scan
    that could never start leaves no deployment behind. A video file is read here (there, and a video FFmpeg can
    open); a stream or a local camera is the pipeline's to open and reopen (it may come up a moment later), so a
    scan with one starts. A scan that can start reports each unreadable file as its camera's error, as before."""
    from openlfr.stream.source import SourceKind

    if any(camera.kind is not SourceKind.FILE for camera in cameras):
        return
    problems = [problem for problem in map(_file_problem, cameras) if problem is not None]
    if problems and len(problems) == len(cameras):
        raise OpenLFRError("; ".join(problems))


def _file_problem(camera: CameraConfig) -> str | None:
    """Why a video file cannot be read, or None."""
    import av

    from openlfr.stream.source import describe_error

    path = Path(camera.url)
    if not path.is_file():
        return f"{camera.url}: {'not a file' if path.exists() else 'no such file'}"
    try:
        with av.open(camera.url) as container:
            if not container.streams.video:
                return f"camera {camera.name!r} ({camera.url}): no video stream in this file"
    except (av.error.FFmpegError, OSError) as exc:
        return describe_error(camera, exc)
    return None


def scan(
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="SOURCE",
            help="Video files, stream URLs (rtsp://, http://, ...) or local cameras (/dev/video0, camera:0).",
        ),
    ] = None,
    watchlist: Annotated[
        str | None,
        typer.Option(
            "--watchlist", metavar="NAME", help="The watchlist to search for (required without --deployment)."
        ),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option("--threshold", metavar="SCORE", min=0.0, max=1.0, help="Alert at this match score.")
    ] = None,
    target_fpir: Annotated[
        str | None,
        typer.Option(
            "--target-fpir",
            metavar="RATE",
            help="Or: a false-alert rate per face ('1e-3', '1 in 33000'); sets the threshold.",
        ),
    ] = None,
    realtime: Annotated[
        bool, typer.Option("--realtime", help="Play files at their own pace, as a camera would.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line: alerts, then a summary.")] = False,
    cameras_file: Annotated[
        Path | None,
        typer.Option(
            "--cameras", metavar="FILE", help="TOML file of camera tables (name, url, fps_cap, roi, min_face_px)."
        ),
    ] = None,
    webhook: Annotated[
        list[str] | None, typer.Option("--webhook", metavar="URL", help="POST each alert to this URL (repeatable).")
    ] = None,
    mqtt: Annotated[
        list[str] | None,
        typer.Option(
            "--mqtt",
            metavar="HOST:PORT/TOPIC",
            help="Publish each alert to this MQTT broker: HOST:PORT/TOPIC (port and topic optional).",
        ),
    ] = None,
    sink: Annotated[
        list[str] | None,
        typer.Option(
            "--sink", metavar="NAME", help="Send each alert to this configured sink (OPENLFR_SINKS; repeatable)."
        ),
    ] = None,
    fps_cap: Annotated[
        float, typer.Option("--fps-cap", metavar="FPS", min=0.0, help="Analyse at most this many frames a second.")
    ] = 0.0,
    min_face: Annotated[
        int | None, typer.Option("--min-face", metavar="PX", min=1, help="Ignore faces shorter than this (px).")
    ] = None,
    roi: Annotated[
        str | None, typer.Option("--roi", metavar="L,T,R,B", help="Region of interest LEFT,TOP,RIGHT,BOTTOM (px).")
    ] = None,
    evidence: Annotated[
        str | None, typer.Option("--evidence", metavar="K/N", help="K/N: K of a track's last N samples (2/5).")
    ] = None,
    deployment: Annotated[
        int | None,
        typer.Option(
            "--deployment", metavar="ID", help="Run inside this authorised deployment (its watchlist snapshot)."
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            metavar="PORT",
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
    sinks = scan_sinks(settings, sink or [], webhook or [], mqtt or [])
    if deployment is not None and sinks:
        raise OpenLFRError("--deployment sends to the sinks it was authorised with: drop --sink/--webhook/--mqtt")
    area = parse_roi(roi)
    k, n = parse_evidence(evidence, settings)
    cameras = cameras_from(sources, cameras_file, fps_cap, min_face, area)
    if not cameras and deployment is None:
        raise OpenLFRError("no sources: give video files or stream URLs (or --cameras FILE)")
    from openlfr.cli.scan_run import run_scan
    from openlfr.services import metrics
    from openlfr.services.context import Context
    from openlfr.services.live import CameraDefaults
    from openlfr.services.scans import ScanRequest
    from openlfr.store.db import open_store
    from openlfr.store.watchlists import get_watchlist
    from openlfr.watchlist.calibration import parse_rate

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
        sinks=list(sinks),
        flags={
            "watchlist": watchlist,
            "threshold": threshold,
            "target_fpir": target_fpir,
            "realtime": realtime,
            "webhook": [redact_url(url) for url in webhook or []],  # a token in a URL is a secret
            "mqtt": mqtt or [],
            "sinks": sink or [],
            "evidence": f"{k}/{n}",
        },
    )
    store = open_store(settings)
    stop_metrics = None
    try:
        if watchlist:
            with store.session() as session:
                get_watchlist(session, watchlist)
        # Before a model is loaded or the scan recorded: a scan that cannot start leaves nothing behind.
        check_sources(cameras)
        port = settings.metrics_port if metrics_port is None else metrics_port
        stop_metrics = metrics.serve_metrics(settings.metrics_host, port) if port else None
        run_scan(store, Context.local(settings), request, as_json, sinks)
    finally:
        store.close()
        if stop_metrics is not None:
            stop_metrics()
