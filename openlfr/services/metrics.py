"""Prometheus metrics of this process: what the live pipelines counted, deployment states, database errors.

Counts only. A label is a deployment id, a camera name, a state, an error class or a route template; no value or
label ever carries a person id, a name, a reference id or an image. The camera processes never touch these
metrics: each sends its cumulative counters and latency histogram to the parent in its ``StatsReport``, the
runner hands them to ``on_stats`` (``services.live.build_pipeline`` wraps it), and :meth:`PipelineMetrics.observe`
adds what changed since the previous report of the same pipeline run to this process's totals. A restarted
pipeline reports from zero again; its ``CameraState`` objects are new, so it is counted from zero, and the
totals keep rising (Prometheus counters never go down). Alerts and their latency are counted once per committed
alert, so a repeated sighting is not counted: in ``openlfr serve`` from the committed-alert event of its event board
(``openlfr.runtime.live_events``: every alert of the database, whichever process wrote it); in ``openlfr worker`` and
``openlfr scan``, which have no event board, at their own commits (``AlertMetricsSink``, a sink of the pipeline's
dispatcher). So with ``serve`` and workers on one database, the server's count is the total.

One registry per process (``REGISTRY``); the operator server answers it at ``/metrics`` (admins), and
``serve_metrics`` answers it, unauthenticated, on a separate address (``metrics_host``/``metrics_port``) for
``openlfr serve``, ``openlfr worker`` and ``openlfr scan``.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event

from openlfr.alerts.record import AlertRecord
from openlfr.errors import OpenLFRError
from openlfr.store.db import Store
from openlfr.stream.runner import CameraState
from openlfr.stream.stats import LATENCY_BUCKETS, CameraCounters, LatencyHistogram

# Upper edges of the latency buckets in ms (the pipeline's own histogram has 1 ms buckets up to 10 s).
LATENCY_EDGES_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000)
# The per-camera counters exported, as (metric name, CameraCounters field, help).
CAMERA_COUNTERS = (
    ("openlfr_camera_frames_decoded", "decoded", "Frames out of the camera's decoder."),
    ("openlfr_camera_frames_processed", "processed", "Frames analysed."),
    ("openlfr_camera_frames_dropped", "dropped", "Frames decoded but not analysed because analysis was busy."),
    ("openlfr_camera_frames_skipped", "skipped", "Frames above the camera's frame-rate cap (by design)."),
    ("openlfr_camera_faces_seen", "faces_seen", "Face observations on analysed frames."),
    ("openlfr_camera_tracks", "tracks", "Faces followed from appearance to disappearance."),
    ("openlfr_camera_embeddings", "embeddings", "Faces embedded."),
    ("openlfr_camera_reconnects", "reconnects", "Reconnections to the camera's source."),
    ("openlfr_camera_errors", "errors", "Errors reading or analysing the camera."),
)
CAMERA_LABELS = ("deployment_id", "camera")
NO_DEPLOYMENT = ""  # a pipeline outside any deployment (none today: every scan is recorded as one)


@dataclass
class _CameraTally:
    counters: CameraCounters = field(default_factory=CameraCounters)
    frame_latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    alerts: int = 0
    alert_latency: LatencyHistogram = field(default_factory=LatencyHistogram)


@dataclass
class _LastReport:
    """A pipeline run's previous report of one camera, to count only what it added since."""

    state: CameraState
    counters: CameraCounters
    latency_counts: np.ndarray
    latency_total_ms: float


def _buckets(histogram: LatencyHistogram) -> list[tuple[str, float]]:
    """Cumulative counts at the edges, in seconds (1 ms bucket i holds [i, i + 1) ms)."""
    cumulative = np.cumsum(histogram.counts)
    return [(str(edge / 1000.0), float(cumulative[edge - 1])) for edge in LATENCY_EDGES_MS] + [
        ("+Inf", float(cumulative[-1]))
    ]


class PipelineMetrics(Collector):
    """Totals of every pipeline this process ran, per deployment and camera; read by Prometheus at each scrape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cameras: dict[tuple[str, str], _CameraTally] = {}
        self._last: dict[tuple[str, str], _LastReport] = {}
        self._states: dict[str, str] = {}
        self._state_sources: dict[int, Callable[[], Sequence[dict[str, Any]]]] = {}
        self._database_errors: dict[str, int] = {}
        self._watched: weakref.WeakSet[Any] = weakref.WeakSet()

    # ----- fed by the pipelines (the parent process) -----

    def observe(self, deployment_id: int | None, states: dict[str, CameraState]) -> None:
        """A runner's latest reports: what each camera counted since its previous report joins the totals."""
        deployment = _label(deployment_id)
        with self._lock:
            for name, state in states.items():
                key = (deployment, name)
                tally = self._cameras.setdefault(key, _CameraTally())
                counters, latency = state.counters, state.latency
                last = self._last.get(key)
                if last is None or last.state is not state:  # a new pipeline run: it counts from zero
                    last = _LastReport(state, CameraCounters(), np.zeros(LATENCY_BUCKETS + 1, np.int64), 0.0)
                gained = CameraCounters(
                    **{k: max(0, v - getattr(last.counters, k)) for k, v in counters.as_dict().items()}
                )
                tally.counters.add(gained)
                added = np.maximum(latency.counts - last.latency_counts, 0)
                tally.frame_latency.merge(
                    LatencyHistogram(added, max(0.0, latency.total_ms - last.latency_total_ms), latency.max_ms)
                )
                self._last[key] = _LastReport(state, counters, latency.counts.copy(), latency.total_ms)

    def alert_committed(self, deployment_id: int | None, camera: str, latency_ms: float | None) -> None:
        with self._lock:
            tally = self._cameras.setdefault((_label(deployment_id), camera), _CameraTally())
            tally.alerts += 1
            if latency_ms is not None:
                tally.alert_latency.add(latency_ms)

    def deployment_state(self, deployment_id: int, state: str) -> None:
        """The state of a deployment's pipeline that no scheduler reports (a scan's)."""
        with self._lock:
            self._states[_label(deployment_id)] = state

    def watch_runs(self, status: Callable[[], Sequence[dict[str, Any]]]) -> Callable[[], None]:
        """Read deployment states from ``status()`` (a scheduler's) at each scrape, until the returned call."""
        key = id(status)
        with self._lock:
            self._state_sources[key] = status

        def forget() -> None:
            with self._lock:
                self._state_sources.pop(key, None)

        return forget

    def watch_store(self, store: Store) -> None:
        """Count every error the store's database raises (once per engine, however often asked)."""
        engine = store.engine
        with self._lock:
            if engine in self._watched:
                return
            self._watched.add(engine)

        def failed(context: Any) -> None:
            kind = type(context.original_exception).__name__
            with self._lock:
                self._database_errors[kind] = self._database_errors.get(kind, 0) + 1

        event.listen(engine, "handle_error", failed)

    # ----- read at each scrape -----

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            cameras = {
                key: _CameraTally(
                    CameraCounters(**t.counters.as_dict()),
                    LatencyHistogram(t.frame_latency.counts.copy(), t.frame_latency.total_ms, t.frame_latency.max_ms),
                    t.alerts,
                    LatencyHistogram(t.alert_latency.counts.copy(), t.alert_latency.total_ms, t.alert_latency.max_ms),
                )
                for key, t in self._cameras.items()
            }
            states = dict(self._states)
            sources = list(self._state_sources.values())
            errors = dict(self._database_errors)
        cameras_up: dict[tuple[str, str], tuple[str, bool]] = {}  # (deployment, camera) -> (state, up)
        for source in sources:
            for run in source():
                states[_label(run["deployment"])] = str(run["state"])
                for camera, health in run.get("cameras", {}).items():
                    cameras_up[(_label(run["deployment"]), camera)] = (str(health["state"]), bool(health["up"]))
        labels = list(CAMERA_LABELS)
        for metric, attribute, documentation in CAMERA_COUNTERS:
            family = CounterMetricFamily(metric, documentation, labels=labels)
            for key, tally in sorted(cameras.items()):
                family.add_metric(list(key), getattr(tally.counters, attribute))
            yield family
        alerts = CounterMetricFamily(
            "openlfr_camera_alerts", "Alerts committed (repeated sightings not counted).", labels=labels
        )
        for key, tally in sorted(cameras.items()):
            alerts.add_metric(list(key), tally.alerts)
        yield alerts
        for metric, documentation, attribute in (
            ("openlfr_frame_latency_seconds", "From a frame's arrival to the end of its analysis.", "frame_latency"),
            (
                "openlfr_alert_latency_seconds",
                "From the deciding frame's arrival to the alert committed.",
                "alert_latency",
            ),
        ):
            histogram = HistogramMetricFamily(metric, documentation, labels=labels)
            for key, tally in sorted(cameras.items()):
                latency: LatencyHistogram = getattr(tally, attribute)
                histogram.add_metric(list(key), _buckets(latency), latency.total_ms / 1000.0)
            yield histogram
        gauge = GaugeMetricFamily(
            "openlfr_deployment_state",
            "1 for the state of each deployment's pipeline in this process (starting, running, restarting, "
            "finished, stopped).",
            labels=["deployment_id", "state"],
        )
        for deployment, state in sorted(states.items()):
            gauge.add_metric([deployment, state], 1.0)
        yield gauge
        up = GaugeMetricFamily(
            "openlfr_camera_up",
            "1 while the camera streams (or has read its file to the end); 0 while it connects, stalls, reconnects "
            "or has failed.",
            labels=labels,
        )
        camera_state = GaugeMetricFamily(
            "openlfr_camera_state",
            "1 for the state of each camera this process runs (connecting, streaming, stalled, reconnecting, failed, "
            "finished).",
            labels=[*labels, "state"],
        )
        for (deployment, camera), (state, is_up) in sorted(cameras_up.items()):
            up.add_metric([deployment, camera], 1.0 if is_up else 0.0)
            camera_state.add_metric([deployment, camera, state], 1.0)
        yield up
        yield camera_state
        database = CounterMetricFamily(
            "openlfr_database_errors", "Errors the database raised, by error class.", labels=["error"]
        )
        for kind, count in sorted(errors.items()):
            database.add_metric([kind], count)
        yield database


def _label(deployment_id: int | None) -> str:
    return NO_DEPLOYMENT if deployment_id is None else str(deployment_id)


class AlertMetricsSink:
    """A dispatcher's sink counting each committed alert and its latency (nothing else of the alert is read)."""

    name = "metrics"

    def __init__(self, metrics: PipelineMetrics, deployment_id: int | None) -> None:
        self.metrics, self.deployment_id = metrics, deployment_id

    def announce(self, alert: AlertRecord) -> None:
        self.metrics.alert_committed(self.deployment_id, alert.camera, alert.latency_ms)

    def close(self, timeout: float) -> None:
        return None


REGISTRY = CollectorRegistry()
PIPELINES = PipelineMetrics()
REGISTRY.register(PIPELINES)
ProcessCollector(registry=REGISTRY)
HTTP_REQUEST_SECONDS = Histogram(
    "openlfr_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template (not the path: no ids), method and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def serve_metrics(host: str, port: int) -> Callable[[], None]:
    """Answer ``REGISTRY`` over HTTP on ``host:port`` in a thread (no login: bind it where only Prometheus
    reaches); returns the call that stops it."""
    try:
        server, thread = start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as exc:
        raise OpenLFRError(f"cannot answer metrics on {host}:{port}: {exc.strerror or exc}") from None

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5.0)

    return stop
