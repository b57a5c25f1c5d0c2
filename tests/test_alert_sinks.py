"""Alerts, on SQLite and PostgreSQL: committed before they are announced in this process (the delivery to
webhooks and MQTT brokers, through the outbox, is tests/test_outbox.py)."""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime

import pytest

from openlfr.alerts.database import AlertDatabase
from openlfr.alerts.dispatch import AlertDispatcher
from openlfr.alerts.record import AlertRecord
from openlfr.alerts.sinks import JsonLinesSink, parse_broker
from openlfr.settings import get_settings
from openlfr.store.alert_models import Alert
from openlfr.store.db import Store, open_store
from openlfr.stream.pipeline import AlertFound


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


def test_broker_addresses() -> None:
    assert parse_broker("localhost") == ("localhost", 1883, "openlfr/alerts")
    assert parse_broker("mqtt://10.0.0.2:1884/ops/lfr/") == ("10.0.0.2", 1884, "ops/lfr")


def test_the_database_errors_worth_retrying_are_named_by_the_store_alone() -> None:
    """One way each (issue 18, item 7): the API and the alert writer read "the database did not answer" from
    ``openlfr.store.db.UNAVAILABLE``; nothing outside the live side imports the dispatcher for it."""
    import grimp

    graph = grimp.build_graph("openlfr")
    importers = graph.find_modules_that_directly_import("openlfr.alerts.dispatch")
    assert not {module for module in importers if module.startswith(("openlfr.api", "openlfr.web"))}, importers
    assert "openlfr.store.db" in graph.find_modules_directly_imported_by("openlfr.api.app")
    assert "openlfr.store.db" in graph.find_modules_directly_imported_by("openlfr.alerts.dispatch")


def test_a_sink_given_by_address_is_named_without_its_credentials_and_within_the_column() -> None:
    from openlfr.alerts.outbox import adhoc_name
    from openlfr.store.alert_models import Delivery

    long = "https://user:pw@hooks.example.org/" + "x" * 500 + "?token=t0k"
    name = adhoc_name("webhook", long)
    assert "pw" not in name and "t0k" not in name and len(name) <= Delivery.__table__.c.sink.type.length
    assert adhoc_name("webhook", long) == name != adhoc_name("webhook", long + "2"), "one name per address"
