"""The delivery worker: sends the outbox's rows (``openlfr.alerts.outbox``) to their sinks, in every ``openlfr
serve`` and ``openlfr worker`` (and for the run of an ``openlfr scan --webhook/--mqtt/--sink``).

One thread per sink, so a sink that does not answer never holds up another, nor the pipeline or the API (they only
write rows). A thread wakes on the committed-alert event (in ``serve``, the event board's: this process's commits
and other processes' ``NOTIFY``; in every process, this process's commits through ``openlfr.store.changes``) and
polls besides (retries coming due, other processes' commits to SQLite). Each row it leases is sent once per
attempt, and tried again with a backoff that doubles up to ``OPENLFR_DELIVERY_RETRY_MAX_SECONDS`` until the sink
takes it or the row expires: across restarts of any process, since the rows are the state.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from openlfr.alerts import outbox
from openlfr.alerts.sinks import Sender, sender_for
from openlfr.config_file import SinkSettings
from openlfr.store import Store, changes
from openlfr.text import first_line
from openlfr.urls import sink_error_text

log = logging.getLogger(__name__)

POLL_S = 1.0  # rows written by other processes, and retries coming due, are seen this late at most
WAKING_TABLES = frozenset({"alerts", "alert_reviews", "deployments"})


class DeliveryWorker:
    """Sends the due rows of ``sinks`` (name -> settings) until ``stop``; ``failures`` counts failed attempts."""

    def __init__(
        self, store: Store, sinks: Mapping[str, SinkSettings], retry_max_s: float, poll_s: float = POLL_S
    ) -> None:
        self.store = store
        self.sinks = {name: config for name, config in sinks.items() if config.enabled}
        self.retry_max_s = retry_max_s
        self.poll_s = poll_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.failures: dict[str, int] = dict.fromkeys(self.sinks, 0)
        self.delivered: dict[str, int] = dict.fromkeys(self.sinks, 0)
        self.last_error: dict[str, str | None] = dict.fromkeys(self.sinks)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._unsubscribe = lambda: None

    def start(self) -> None:
        if self._threads or not self.sinks:
            return
        self._unsubscribe = changes.subscribe(self.store.engine, self._announced)
        for name in self.sinks:
            thread = threading.Thread(target=self._run, args=(name,), name=f"openlfr-delivery-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._unsubscribe()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def wake(self) -> None:
        self._wake.set()

    def drain(self, deployment_id: int | None, timeout: float) -> dict[str, int]:
        """Wait up to ``timeout`` seconds for this worker's sinks to take a deployment's pending rows; what is left."""
        deadline = time.monotonic() + timeout
        while True:
            self._wake.set()
            left = {
                sink: count
                for sink, count in outbox.pending_counts(self.store, deployment_id).items()
                if sink in self.sinks and count
            }
            if not left or time.monotonic() >= deadline:
                return left
            self._stop.wait(0.2)

    def _announced(self, tables: frozenset[str]) -> None:
        if tables & WAKING_TABLES:
            self._wake.set()

    def _run(self, name: str) -> None:
        config = self.sinks[name]
        sender: Sender | None = None
        lease_s = config.timeout_seconds * 2 + 30.0  # well past one attempt: never two senders of one row
        while not self._stop.is_set():
            try:
                if sender is None:
                    sender = sender_for(name, config, self.owner)
                rows = outbox.claim(self.store, name, self.owner, lease_s)
            except Exception as exc:  # the database away, a bad sink address: said, and tried again
                why = sink_error_text(first_line(exc), config.url, config.secret)
                self._note_failure(name, f"cannot read the outbox or open the sink: {why}")
                rows = []
            for row in rows:
                if self._stop.is_set():
                    break  # its lease runs out and another sender, or this one restarted, sends it
                self._send(name, sender, row)
            if not rows:
                self._wake.wait(self.poll_s)
                self._wake.clear()
        if sender is not None:
            sender.close()

    def _send(self, name: str, sender: Sender | None, row: outbox.Claimed) -> None:
        error: str | None = None
        try:
            if sender is None:
                raise RuntimeError("the sink could not be opened")
            payload = outbox.with_probe(self.store, row) if self.sinks[name].include_probe else row.payload
            sender.send(row.key, row.kind, payload)
        except Exception as exc:  # (a URL in the error may carry a token: shown without it)
            config = self.sinks[name]
            error = sink_error_text(first_line(exc), config.url, config.secret)
        try:
            outbox.finish(self.store, row, self.owner, error, self.retry_max_s)
        except Exception as exc:  # delivered but not recorded: sent again once its lease ends (same key)
            log.warning("sink %s: the attempt on %s could not be recorded: %s", name, row.key, first_line(exc))
        if error is None:
            with self._lock:
                self.delivered[name] += 1
                self.last_error[name] = None
        else:
            self._note_failure(name, error)
            log.warning(
                "sink %s: %s event %s not delivered (attempt %d): %s", name, row.kind, row.key, row.attempts + 1, error
            )

    def _note_failure(self, name: str, error: str) -> None:
        with self._lock:
            self.failures[name] += 1
            self.last_error[name] = error

    def status(self) -> list[dict[str, object]]:
        """Each sink: pending rows, failed attempts and the last error (for ``/health`` and the console)."""
        try:
            pending = outbox.pending_counts(self.store)
        except Exception:
            pending = {}
        with self._lock:
            return [
                {
                    "sink": name,
                    "type": config.type,
                    "pending": pending.get(name, 0),
                    "failures": self.failures[name],
                    "delivered": self.delivered[name],
                    "last_error": self.last_error[name],
                }
                for name, config in self.sinks.items()
            ]


class _Workers(Collector):
    """The delivery metrics of every worker running in this process, registered once per registry."""

    def __init__(self) -> None:
        self.workers: list[DeliveryWorker] = []
        self.registries: set[int] = set()

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        pending = GaugeMetricFamily(
            "openlfr_deliveries_pending", "Events not yet delivered to the sink", labels=["sink"]
        )
        failures = CounterMetricFamily(
            "openlfr_delivery_failures", "Failed delivery attempts by this process", labels=["sink"]
        )
        for worker in list(self.workers):
            for sink in worker.status():
                pending.add_metric([str(sink["sink"])], float(sink["pending"]))  # type: ignore[arg-type]
                failures.add_metric([str(sink["sink"])], float(sink["failures"]))  # type: ignore[arg-type]
        yield pending
        yield failures


_WORKERS = _Workers()


def export_metrics(worker: DeliveryWorker, registry: CollectorRegistry) -> Callable[[], None]:
    """``openlfr_deliveries_pending{sink}`` and ``openlfr_delivery_failures_total{sink}`` of ``worker`` in
    ``registry`` (read at each scrape); returns the function that stops exporting them."""
    if id(registry) not in _WORKERS.registries:
        registry.register(_WORKERS)
        _WORKERS.registries.add(id(registry))
    _WORKERS.workers.append(worker)
    return lambda: _WORKERS.workers.remove(worker) if worker in _WORKERS.workers else None
