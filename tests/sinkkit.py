"""Receivers for the sinks' tests: a webhook receiver on 127.0.0.1 that checks each request's HMAC signature, can
refuse (503) until told otherwise, de-duplicates by ``Idempotency-Key`` and counts what a receiver must never see
(a key delivered twice, one key with two contents, two requests of one key at once); and an MQTT subscriber."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import paho.mqtt.client as mqtt

from openlfr.stream.pipeline import AlertFound

SECRET = "test-signing-secret-0123456789"


def signed_by(secret: str, header: str, body: bytes, tolerance_s: float = 300.0) -> bool:
    """Whether ``header`` (``t=<unix time>,v1=<hex>``) signs ``body`` under ``secret``, and is fresh."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    if "t" not in parts or "v1" not in parts or abs(time.time() - int(parts["t"])) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        receiver: SigningReceiver = self.server.receiver  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        status = receiver.take(dict(self.headers), body)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


class SigningReceiver:
    """A webhook receiver: 503 while ``refusing``, else 200 (each request held ``hold_s`` so that two senders of
    one key at once would overlap and be seen)."""

    def __init__(self, secret: str = SECRET, refusing: bool = False, hold_s: float = 0.05) -> None:
        self.secret = secret
        self.refusing = refusing
        self.hold_s = hold_s
        self.lock = threading.Lock()
        self.accepted: list[str] = []  # keys answered 200, in order
        self.bodies: dict[str, bytes] = {}
        self.events: list[dict[str, Any]] = []  # the accepted payloads, first delivery of each key
        self.refused = 0
        self.first_refused_at: float | None = None  # time.monotonic() of the first 503
        self.unsigned = 0
        self.conflicts = 0  # one key, two different bodies
        self.overlaps = 0  # a key arriving while another request of the same key is in flight
        self.in_flight: Counter[str] = Counter()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.receiver = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def take(self, headers: dict[str, str], body: bytes) -> int:
        key = headers.get("Idempotency-Key", "")
        with self.lock:
            if not signed_by(self.secret, headers.get("OpenLFR-Signature", ""), body):
                self.unsigned += 1
            self.overlaps += self.in_flight[key] > 0
            self.in_flight[key] += 1
        time.sleep(self.hold_s)
        with self.lock:
            self.in_flight[key] -= 1
            if self.refusing:
                self.refused += 1
                if self.first_refused_at is None:
                    self.first_refused_at = time.monotonic()
                return 503
            if key in self.bodies:
                self.conflicts += self.bodies[key] != body
            else:
                self.bodies[key] = body
                self.events.append(json.loads(body))
            self.accepted.append(key)
            return 200

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Subscriber:
    """An MQTT subscriber (QoS 1) to ``topic`` on a broker of 127.0.0.1."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        subscribed = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        client.on_connect = lambda c, u, f, r, p: c.subscribe(topic, qos=1)
        client.on_subscribe = lambda c, u, m, r, p: subscribed.set()
        client.on_message = lambda c, u, message: self.messages.append((message.topic, json.loads(message.payload)))
        client.connect("127.0.0.1", port)
        client.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the MQTT subscription was not acknowledged")
        self.client = client

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


PROBE = b"\xff\xd8\xff\xe0probe-bytes-of-a-face"


def found(person: str, track: int) -> AlertFound:
    """A match the pipeline hands the alerts stage, as the outbox tests commit it (a fake probe, no real face)."""
    return AlertFound(
        camera="entrance",
        track_id=track,
        person_id=person,
        reference_id=3,
        score=0.91,
        threshold=0.6,
        candidates=[(person, 3, 0.91)],
        probe_jpeg=PROBE,
        arrival=time.monotonic(),
        seen_at=datetime.now(UTC),
        clock=1.0,
        media_time=1.0,
        model_id="test-model",
        evidence={"samples": 3, "supporting": 2},
    )
