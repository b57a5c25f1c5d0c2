"""Where events go: the alert line on stdout (``scan --json``), and the senders of the outbox's rows to a webhook,
an MQTT broker or a JSON-lines file (``openlfr.alerts.delivery`` calls them; ``openlfr.alerts.outbox`` holds the
rows).

A webhook gets the event as a JSON body signed with HMAC-SHA256 under the sink's secret, as Stripe's and GitHub's
webhooks are: ``OpenLFR-Signature: t=<unix time>,v1=<hex HMAC of "<t>.<body>">``, so a receiver checks both who
sent it and that it is fresh; ``Idempotency-Key`` is the event's stable key, the same on every attempt. TLS is
verified, every attempt bounded by the sink's timeout. An MQTT broker gets the same body, QoS 1, on a persistent
session (a fixed client id, clean start off), on ``<topic>/<event>/<camera>``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from pathlib import Path
from typing import IO, Any, Protocol

from openlfr.alerts.record import AlertRecord
from openlfr.config_file import SinkSettings
from openlfr.errors import OpenLFRError

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "OpenLFR-Signature"


class SinkError(OpenLFRError):
    """A sink is misconfigured (bad URL, bad broker address)."""


class AlertSink(Protocol):
    """Who hears of a committed alert in this process (the ``scan --json`` line, the pipeline's metrics)."""

    name: str

    def announce(self, alert: AlertRecord) -> None:
        """Hand the alert over; must not block on the network."""
        ...

    def close(self, timeout: float) -> None:
        """Finish for up to ``timeout`` seconds, then stop."""
        ...


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


class Sender(Protocol):
    def send(self, key: str, kind: str, payload: dict[str, Any]) -> None:
        """Deliver once, or raise (the row is tried again later)."""
        ...

    def close(self) -> None: ...


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``OpenLFR-Signature`` header's value for ``body`` sent at ``timestamp`` (unix seconds)."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class WebhookSender:
    """HTTP POST, 2xx = delivered; anything else (or no answer within the timeout) is tried again later."""

    def __init__(self, name: str, config: SinkSettings) -> None:
        import httpx

        if not config.url.startswith(("http://", "https://")):
            raise SinkError(f"sink {name}: a webhook URL starts with http:// or https://")
        self.config = config
        self._client = httpx.Client(timeout=config.timeout_seconds, verify=True, follow_redirects=False)

    def send(self, key: str, kind: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": key, "OpenLFR-Event": kind}
        secret = self.config.secret_value()
        if secret:
            headers[SIGNATURE_HEADER] = signature(secret, int(time.time()), body)
        status = self._client.post(self.config.url, content=body, headers=headers).status_code
        if not 200 <= status < 300:
            raise RuntimeError(f"HTTP {status}")

    def close(self) -> None:
        self._client.close()


class MqttSender:
    """QoS 1 on a persistent session: the broker keeps what a subscriber of the same session missed."""

    def __init__(self, name: str, config: SinkSettings, client_id: str) -> None:
        import paho.mqtt.client as mqtt

        self.host, self.port, self.topic = parse_broker(config.url)
        self.timeout_s = config.timeout_seconds
        self._connected = threading.Event()
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, protocol=mqtt.MQTTv311
        )
        if config.username:
            client.username_pw_set(config.username, config.secret_value())
        client.on_connect = lambda c, u, flags, reason, props: self._connected.set() if not reason.is_failure else None
        client.on_disconnect = lambda c, u, flags, reason, props: self._connected.clear()
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.connect_async(self.host, self.port, keepalive=30)
        client.loop_start()
        self._client = client

    def send(self, key: str, kind: str, payload: dict[str, Any]) -> None:
        if not self._connected.wait(self.timeout_s):
            raise ConnectionError(f"not connected to the MQTT broker {self.host}:{self.port}")
        topic = f"{self.topic}/{kind}/{safe_topic_level(str(payload.get('camera') or 'deployment'))}"
        info = self._client.publish(topic, json.dumps(payload, sort_keys=True), qos=1)
        info.wait_for_publish(self.timeout_s)
        if not info.is_published():
            raise TimeoutError(f"the broker did not acknowledge within {self.timeout_s} s")

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


class JsonlSender:
    """One JSON object per line appended to a file (a collector that tails it)."""

    def __init__(self, config: SinkSettings) -> None:
        self.path = Path(config.url)

    def send(self, key: str, kind: str, payload: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(payload, sort_keys=True) + "\n")

    def close(self) -> None:
        return None


def sender_for(name: str, config: SinkSettings, owner: str) -> Sender:
    if config.type == "webhook":
        return WebhookSender(name, config)
    if config.type == "mqtt":
        client_id = "openlfr-" + hashlib.sha256(f"{name}|{owner}".encode()).hexdigest()[:16]
        return MqttSender(name, config, client_id)
    return JsonlSender(config)


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


def safe_topic_level(name: str) -> str:
    """A camera name as one MQTT topic level: no separators or wildcards."""
    return "".join("_" if ch in "/+#" else ch for ch in name) or "camera"
