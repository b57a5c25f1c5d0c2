"""Where a committed alert is announced: JSON lines on stdout, a webhook, an MQTT broker.

Every sink gets an alert only after it is in the database. Sinks that cross a network deliver from a
background thread (a slow receiver never holds up the cameras), retry with exponential backoff, and record
each delivery in a ledger, so an alert id is delivered once: a repeated announcement, or a restart that
resends what was pending, does not deliver it again. The webhook also sends the alert's ``uid`` as an
``Idempotency-Key`` header, for receivers that de-duplicate themselves.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, Protocol

from openlfr.alerts.record import AlertRecord
from openlfr.errors import OpenLFRError

log = logging.getLogger(__name__)


class SinkError(OpenLFRError):
    """A sink is misconfigured (bad URL, bad broker address)."""


class PermanentFailure(Exception):
    """The receiver refused the alert in a way retrying will not fix (e.g. HTTP 400)."""


class AlertSink(Protocol):
    name: str

    def announce(self, alert: AlertRecord) -> None:
        """Hand the alert over; must not block on the network."""
        ...

    def close(self, timeout: float) -> None:
        """Finish pending deliveries for up to ``timeout`` seconds, then stop."""
        ...


class Ledger(Protocol):
    def delivered(self, alert_id: int, sink: str) -> bool: ...
    def attempt_failed(self, alert_id: int, sink: str, error: str) -> None: ...
    def mark_delivered(self, alert_id: int, sink: str) -> None: ...


class MemoryLedger:
    """A ledger for one process (tests, or running without a database)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.done: set[tuple[int, str]] = set()
        self.failures: dict[tuple[int, str], int] = {}

    def delivered(self, alert_id: int, sink: str) -> bool:
        with self._lock:
            return (alert_id, sink) in self.done

    def attempt_failed(self, alert_id: int, sink: str, error: str) -> None:
        with self._lock:
            self.failures[(alert_id, sink)] = self.failures.get((alert_id, sink), 0) + 1

    def mark_delivered(self, alert_id: int, sink: str) -> None:
        with self._lock:
            self.done.add((alert_id, sink))


class JsonLinesSink:
    """One JSON object per line (the `scan --json` alert line), flushed at once."""

    name = "stdout"

    def __init__(self, stream: IO[str], lock: threading.Lock | None = None) -> None:
        self.stream = stream
        self.lock = lock or threading.Lock()

    def announce(self, alert: AlertRecord) -> None:
        with self.lock:
            self.stream.write(json.dumps(alert.json_line()) + "\n")
            self.stream.flush()

    def close(self, timeout: float) -> None:
        return None


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def delay(self, attempt: int) -> float:
        return min(self.max_backoff_s, self.initial_backoff_s * 2 ** (attempt - 1))


@dataclass(frozen=True)
class Delivery:
    """How a networked sink delivers: retries, how long one attempt may wait, whether the probe crop goes too."""

    retry: RetryPolicy = RetryPolicy()
    timeout_s: float = 5.0
    include_probe: bool = False


class RetryingSink:
    """A background deliverer: a bounded queue, retries with backoff, the ledger for once-per-id delivery."""

    name = "retrying"
    max_pending = 10_000

    def __init__(self, ledger: Ledger, delivery: Delivery) -> None:
        self.ledger = ledger
        self.policy = delivery.retry
        self.include_probe = delivery.include_probe
        self.delivered = 0
        self.failed = 0
        self._queue: queue.Queue[AlertRecord | None] = queue.Queue(self.max_pending)
        self._in_flight: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sink-{self.name}", daemon=True)
        self._thread.start()

    def deliver(self, alert: AlertRecord) -> None:
        """Send once; raise ``PermanentFailure`` or any other exception (retried)."""
        raise NotImplementedError

    def payload(self, alert: AlertRecord) -> str:
        """What every networked sink sends: the alert document, with the probe crop only if configured."""
        return json.dumps(alert.document(self.include_probe))

    def announce(self, alert: AlertRecord) -> None:
        with self._lock:
            if alert.id in self._in_flight:
                return
            self._in_flight.add(alert.id)
        try:
            self._queue.put_nowait(alert)
        except queue.Full:
            log.error(
                "%s: %d alerts waiting, alert %d not queued (it stays in the database)",
                self.name,
                self.max_pending,
                alert.id,
            )

    def _run(self) -> None:
        while True:
            alert = self._queue.get()
            if alert is None:
                return
            try:
                self._deliver_with_retries(alert)
            finally:
                with self._lock:
                    self._in_flight.discard(alert.id)

    def _deliver_with_retries(self, alert: AlertRecord) -> None:
        if self.ledger.delivered(alert.id, self.name):
            return
        for attempt in range(1, self.policy.max_attempts + 1):
            try:
                self.deliver(alert)
            except PermanentFailure as exc:
                self.ledger.attempt_failed(alert.id, self.name, f"refused: {exc}")
                log.error("%s refused alert %d: %s (not retried)", self.name, alert.id, exc)
                self.failed += 1
                return
            except Exception as exc:
                self.ledger.attempt_failed(alert.id, self.name, str(exc) or type(exc).__name__)
                if attempt == self.policy.max_attempts or self._stop.is_set():
                    log.error("%s: alert %d not delivered after %d attempts: %s", self.name, alert.id, attempt, exc)
                    self.failed += 1
                    return
                log.warning("%s: alert %d attempt %d failed (%s); retrying", self.name, alert.id, attempt, exc)
                self._stop.wait(self.policy.delay(attempt))
                continue
            self.ledger.mark_delivered(alert.id, self.name)
            self.delivered += 1
            return

    def close(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self._queue.put(None)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            # Give up waiting: cut the backoff short; whatever is pending stays undelivered in the ledger.
            self._stop.set()
            self._thread.join(2.0)
        self.shutdown()

    def shutdown(self) -> None:
        return None


class WebhookSink(RetryingSink):
    """HTTP POST of the alert document as JSON. 2xx = delivered; 408, 429 and 5xx are retried; other 4xx not."""

    def __init__(
        self,
        url: str,
        ledger: Ledger,
        delivery: Delivery = Delivery(),
        headers: dict[str, str] | None = None,
    ) -> None:
        import httpx

        if not url.startswith(("http://", "https://")):
            raise SinkError(f"a webhook URL starts with http:// or https://, got {url!r}")
        self.url = url
        self.name = f"webhook:{url}"
        self._client = httpx.Client(timeout=delivery.timeout_s, headers=headers or {})
        super().__init__(ledger, delivery)

    def deliver(self, alert: AlertRecord) -> None:
        response = self._client.post(
            self.url,
            content=self.payload(alert),
            headers={"Content-Type": "application/json", "Idempotency-Key": alert.uid},
        )
        status = response.status_code
        if 200 <= status < 300:
            return
        if 400 <= status < 500 and status not in (408, 429):
            raise PermanentFailure(f"HTTP {status}")
        raise RuntimeError(f"HTTP {status}")

    def shutdown(self) -> None:
        self._client.close()


def parse_broker(address: str) -> tuple[str, int, str]:
    """``host[:port][/topic/prefix]`` -> (host, port, topic prefix); defaults: 1883, ``openlfr/alerts``."""
    text = address.removeprefix("mqtt://")
    location, _, topic = text.partition("/")
    host, _, port_text = location.rpartition(":") if ":" in location else (location, "", "")
    if not host:
        raise SinkError(f"an MQTT broker is host[:port][/topic], got {address!r}")
    try:
        port = int(port_text) if port_text else 1883
    except ValueError:
        raise SinkError(f"bad MQTT port in {address!r}") from None
    return host, port, topic.strip("/") or "openlfr/alerts"


class MqttSink(RetryingSink):
    """Publishes the alert document (QoS 1) on ``<prefix>/<camera>``; paho-mqtt reconnects by itself."""

    def __init__(
        self,
        address: str,
        ledger: Ledger,
        delivery: Delivery = Delivery(),
        client_factory: Callable[[], Any] | None = None,
    ) -> None:
        import paho.mqtt.client as mqtt

        self.host, self.port, self.topic = parse_broker(address)
        self.name = f"mqtt:{self.host}:{self.port}/{self.topic}"
        self.timeout_s = delivery.timeout_s
        self._connected = threading.Event()
        client = client_factory() if client_factory else mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        client.on_connect = lambda c, u, flags, reason, props: self._connected.set() if not reason.is_failure else None
        client.on_disconnect = lambda c, u, flags, reason, props: self._connected.clear()
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.connect_async(self.host, self.port, keepalive=30)
        client.loop_start()
        self._client = client
        super().__init__(ledger, delivery)

    def deliver(self, alert: AlertRecord) -> None:
        if not self._connected.wait(self.timeout_s):
            raise ConnectionError(f"not connected to the MQTT broker {self.host}:{self.port}")
        topic = f"{self.topic}/{safe_topic_level(alert.camera)}"
        info = self._client.publish(topic, self.payload(alert), qos=1)
        info.wait_for_publish(self.timeout_s)
        if not info.is_published():
            raise TimeoutError(f"the broker did not acknowledge within {self.timeout_s} s")

    def shutdown(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def safe_topic_level(name: str) -> str:
    """A camera name as one MQTT topic level: no separators or wildcards."""
    return "".join("_" if ch in "/+#" else ch for ch in name) or "camera"
