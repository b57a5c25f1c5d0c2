"""Alerts, on SQLite and PostgreSQL: committed before they are announced; a webhook retried with backoff and
delivered once per alert id; MQTT through Debian's real mosquitto broker, including a broker that comes up late."""

from __future__ import annotations

import io
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa

from openlfr.alerts.database import AlertDatabase, DeliveryLedger
from openlfr.alerts.dispatch import AlertDispatcher
from openlfr.alerts.record import AlertRecord
from openlfr.alerts.sinks import Delivery, JsonLinesSink, MqttSink, RetryPolicy, WebhookSink, parse_broker
from openlfr.settings import get_settings
from openlfr.store.alert_models import Alert, AlertDelivery
from openlfr.store.db import Store, open_store
from openlfr.stream.pipeline import AlertFound
from tests.streamkit import Mosquitto, webhook_receiver

FAST = RetryPolicy(max_attempts=4, initial_backoff_s=0.05, max_backoff_s=0.2)


@pytest.fixture
def store(store_url: str) -> Store:
    """The alerts tables on SQLite and on a real PostgreSQL server (each test runs on both)."""
    opened = open_store(get_settings())
    yield opened
    opened.close()


def found(person: str = "P-001", track: int = 7) -> AlertFound:
    return AlertFound(
        camera="entrance",
        track_id=track,
        person_id=person,
        reference_id=3,
        score=0.91,
        threshold=0.77,
        candidates=[(person, 3, 0.91), ("P-002", 5, 0.41)],
        probe_jpeg=b"\xff\xd8\xff\xe0probe",
        arrival=time.monotonic() - 0.05,
        seen_at=datetime.now(UTC),
        clock=12.5,
        media_time=12.5,
        model_id="dlib_resnet_v1+flip",
        evidence={"samples": 3, "supporting": 2, "k": 2, "n": 5, "track_age_ms": 400.0},
    )


def wait_for(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def test_an_alert_is_in_the_database_before_any_sink_hears_of_it(store: Store) -> None:
    seen_in_db: list[bool] = []

    class Probe:
        name = "probe"

        def announce(self, alert: AlertRecord) -> None:
            # A separate connection: only a committed row is visible here.
            with store.session() as session:
                seen_in_db.append(session.get(Alert, alert.id) is not None)

        def close(self, timeout: float) -> None:
            return None

    out = io.StringIO()
    dispatcher = AlertDispatcher(
        AlertDatabase(store), [Probe(), JsonLinesSink(out)], watchlist_name="event", names={"P-001": "Eileen Collins"}
    )
    record = dispatcher.handle(found())
    assert seen_in_db == [True]
    line = json.loads(out.getvalue())
    assert line == {
        "type": "alert",
        "person": "P-001",
        "camera": "entrance",
        "track": 7,
        "score": 0.91,
        "latency_ms": line["latency_ms"],
    }
    assert 50 <= line["latency_ms"] < 5000
    with store.session() as session:
        row = session.get(Alert, record.id)
        assert row is not None
        assert row.person_name == "Eileen Collins" and row.reference_image_id == 3 and row.watchlist_name == "event"
        assert row.candidates[1] == {"person": "P-002", "name": "", "reference_image_id": 5, "score": 0.41}
        assert row.probe_jpeg == b"\xff\xd8\xff\xe0probe" and row.latency_ms == pytest.approx(record.latency_ms)


def test_a_webhook_is_retried_with_backoff_and_delivered_once(store: Store) -> None:
    record = AlertDatabase(store).commit(found(), watchlist_name="event", names={})
    ledger = DeliveryLedger(store)
    with webhook_receiver([503, 503, 200]) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
        sink = WebhookSink(url, ledger, Delivery(FAST))
        sink.announce(record)
        sink.announce(record)  # the same alert again, while the first is still being retried
        wait_for(lambda: ledger.delivered(record.id, sink.name))
        sink.announce(record)  # and once more after delivery
        sink.close(5.0)
        statuses = [status for status, _, _ in server.requests]
        assert statuses == [503, 503, 200], "retried until accepted, then never again"
        _, headers, body = server.requests[-1]
        assert headers["Idempotency-Key"] == record.uid
        document = json.loads(body)
        assert document["id"] == record.id and document["person"] == "P-001" and "probe_jpeg_base64" not in document
        # A restarted process finds nothing left to send for this sink.
        again = WebhookSink(url, ledger, Delivery(FAST))
        assert [r.id for r in ledger.undelivered(again.name, timedelta(hours=1))] == []
        again.announce(record)
        again.close(2.0)
        assert len(server.requests) == 3
    with store.session() as session:
        delivery = session.scalars(sa.select(AlertDelivery)).one()
        assert delivery.attempts == 3 and delivery.delivered_at is not None and delivery.last_error is None


def test_a_webhook_that_refuses_is_not_retried_and_the_alert_stays_pending(store: Store) -> None:
    record = AlertDatabase(store).commit(found(), watchlist_name="event", names={})
    ledger = DeliveryLedger(store)
    with webhook_receiver([400]) as server:
        sink = WebhookSink(f"http://127.0.0.1:{server.server_address[1]}/", ledger, Delivery(FAST))
        sink.announce(record)
        sink.close(5.0)
        assert [status for status, _, _ in server.requests] == [400]
        assert sink.failed == 1 and not ledger.delivered(record.id, sink.name)
        assert [r.id for r in ledger.undelivered(sink.name, timedelta(hours=1))] == [record.id]


def test_mqtt_through_a_real_broker_that_starts_late(store: Store, tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path)
    record = AlertDatabase(store).commit(found(), watchlist_name="event", names={"P-001": "Eileen Collins"})
    ledger = DeliveryLedger(store)
    sink = MqttSink(f"127.0.0.1:{broker.port}/force/alerts", ledger, Delivery(RetryPolicy(6, 0.3, 1.0), timeout_s=1.0))
    try:
        sink.announce(record)  # no broker yet: the first attempts fail and are retried
        time.sleep(1.0)
        assert not ledger.delivered(record.id, sink.name)
        broker.start()
        received: list[mqtt.MQTTMessage] = []
        subscribed = threading.Event()
        listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        listener.on_connect = lambda c, u, f, r, p: c.subscribe("force/alerts/#", qos=1)
        listener.on_subscribe = lambda c, u, m, r, p: subscribed.set()
        listener.on_message = lambda c, u, message: received.append(message)
        listener.connect("127.0.0.1", broker.port)
        listener.loop_start()
        assert subscribed.wait(5)
        wait_for(lambda: ledger.delivered(record.id, sink.name), timeout=15)
        wait_for(lambda: bool(received), timeout=5)
        listener.loop_stop()
        listener.disconnect()
        (message,) = received
        assert message.topic == "force/alerts/entrance"
        document = json.loads(message.payload)
        assert document["uid"] == record.uid and document["person_name"] == "Eileen Collins"
    finally:
        sink.close(3.0)
        broker.stop()


def test_broker_addresses() -> None:
    assert parse_broker("localhost") == ("localhost", 1883, "openlfr/alerts")
    assert parse_broker("mqtt://10.0.0.2:1884/ops/lfr/") == ("10.0.0.2", 1884, "ops/lfr")


def test_old_alerts_are_not_resent(store: Store) -> None:
    database = AlertDatabase(store)
    old = database.commit(found(track=1), watchlist_name="event", names={})
    with store.session() as session:
        session.execute(
            sa.update(Alert).where(Alert.id == old.id).values(created_at=datetime.now(UTC) - timedelta(days=2))
        )
    recent = database.commit(found(track=2), watchlist_name="event", names={})
    pending = DeliveryLedger(store).undelivered("webhook:x", timedelta(hours=1))
    assert [r.id for r in pending] == [recent.id] and pending[0].probe_jpeg is not None
