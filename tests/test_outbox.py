"""Delivery from the server through the transactional outbox, on SQLite and PostgreSQL: an alert's commit writes
one row per sink of its deployment in its own transaction; the delivery worker sends it, signed, to a webhook and
an MQTT broker, with no image bytes, and then the operator's decision, the second operator's verification and the
outcome as events of their own. A sink the deployment does not subscribe to an event kind never sees it."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from openlfr.alerts.database import AlertDatabase
from openlfr.alerts.delivery import DeliveryWorker
from openlfr.governance.roles import Role
from openlfr.services.audit_log import audit_key
from openlfr.services.context import Context
from openlfr.services.retention import enforce_retention, policy_of
from openlfr.services.sink_settings import audit_sinks
from openlfr.settings import get_settings
from openlfr.store.alert_models import Delivery
from openlfr.store.db import open_store
from openlfr.store.governance_models import AuditEntry
from tests.serverkit import (
    JUSTIFICATION,
    add_user,
    add_watchlist,
    bearer_token,
    build_app,
    configure,
    draft_body,
    login,
)
from tests.sinkkit import PROBE, SECRET, SigningReceiver, Subscriber, found
from tests.streamkit import Mosquitto
from tests.waitkit import wait_for


def sinks_setting(tmp_path: Path, webhook: str, broker_port: int, **hook: object) -> str:
    secret_file = tmp_path / "hook.secret"
    secret_file.write_text(SECRET + "\n")
    return json.dumps(
        {
            "hook": {"type": "webhook", "url": webhook, "secret_file": str(secret_file), **hook},
            "bus": {"type": "mqtt", "url": f"127.0.0.1:{broker_port}/force", "events": ["alert"]},
        }
    )


def test_an_alert_and_its_decisions_reach_a_signed_webhook_and_mqtt(
    monkeypatch: pytest.MonkeyPatch, store_url: str, tmp_path: Path
) -> None:
    broker = Mosquitto(tmp_path)
    broker.start()
    receiver = SigningReceiver()
    subscriber = Subscriber(broker.port, "force/#")
    configure(monkeypatch, OPENLFR_SINKS=sinks_setting(tmp_path, receiver.url, broker.port))
    app = build_app()
    worker: DeliveryWorker | None = None
    try:
        for name, role in [("olly", Role.OPERATOR), ("omar", Role.OPERATOR), ("ava", Role.AUTHORISER)]:
            add_user(app, name, role)
        add_watchlist(app)
        olly, omar, ava = login(app, "olly"), login(app, "omar"), login(app, "ava")
        start = datetime.now(UTC) - timedelta(seconds=5)
        refused = olly.post("/api/deployments", json=draft_body(start, sinks=["nowhere"]))
        assert refused.status_code in (400, 409, 422) and "nowhere" in refused.text
        drafted = olly.post("/api/deployments", json=draft_body(start, sinks=["hook", "bus"])).json()
        assert drafted["sinks"] == ["hook", "bus"]
        authorised = ava.post(f"/api/deployments/{drafted['id']}/authorise", json={"justification": JUSTIFICATION})
        assert authorised.status_code == 200, authorised.text
        assert ava.get(f"/api/deployments/{drafted['id']}").json()["sinks"] == ["hook", "bus"]  # shown to them
        store = app.state.server.store
        with store.session() as db:  # and kept in the authorised facts
            details = db.scalar(sa.select(AuditEntry.details).where(AuditEntry.action == "deployment.authorise"))
        assert details is not None and details["sinks"] == ["hook", "bus"]
        assert ava.get(f"/api/deployments/{drafted['id']}/record").json()["sinks"] == "hook, bus"  # and the record

        record, new = AlertDatabase(store).write(
            found("P001", 7), watchlist_name="wanted", names={"P001": "Person 1"}, deployment_id=drafted["id"]
        )
        assert new
        with store.session() as db:  # written with the alert, before any sender ran
            rows = db.execute(sa.select(Delivery.sink, Delivery.key, Delivery.kind).order_by(Delivery.id)).all()
        assert [tuple(row) for row in rows] == [("hook", record.uid, "alert"), ("bus", record.uid, "alert")]

        worker = DeliveryWorker(store, get_settings().sinks, retry_max_s=1.0, poll_s=0.2)
        worker.start()
        wait_for("the webhook's alert", lambda: len(receiver.accepted) >= 1, 30)
        wait_for("the MQTT alert", lambda: len(subscriber.messages) >= 1, 30)
        alert = receiver.events[0]
        assert receiver.accepted == [record.uid] and receiver.unsigned == 0
        assert alert["event"] == "alert" and alert["alert_id"] == record.id and alert["deployment_id"] == drafted["id"]
        assert alert["person"] == {"reference_id": "P001", "name": "Person 1", "category": "wanted_offence"}
        assert alert["camera"] == "entrance" and alert["score"] == 0.91 and alert["kind"] == "live"
        assert alert["url"].endswith(f"/alerts/{record.id}") and "false_match_rate" in alert
        for body in receiver.bodies.values():  # no image: neither the bytes nor their base64
            assert b"probe" not in body and base64.b64encode(PROBE)[:12] not in body and b"\xff\xd8" not in body
        topic, message = subscriber.messages[0]
        assert topic == "force/alert/entrance" and message == alert

        assert olly.post(f"/api/alerts/{record.id}/decision", json={"decision": "confirmed"}).status_code == 200
        assert omar.post(f"/api/alerts/{record.id}/verify").status_code == 200
        assert olly.post(f"/api/alerts/{record.id}/outcome", json={"outcome": "arrested"}).status_code == 200
        wait_for("the decision events", lambda: len(receiver.accepted) >= 4, 30)
        kinds = [(event["event"], event.get("by")) for event in receiver.events]
        assert kinds == [("alert", None), ("decision", "olly"), ("verification", "omar"), ("outcome", "olly")]
        assert receiver.events[1]["decision"] == "confirmed" and receiver.events[2]["alert_key"] == record.uid
        assert receiver.accepted[1:] == [f"{record.uid}:{kind}" for kind in ("decision", "verification", "outcome")]
        time.sleep(1.0)  # the broker's sink subscribes to alerts only: nothing else arrives there
        assert [event["event"] for _, event in subscriber.messages] == ["alert"]
        assert receiver.conflicts == 0 and receiver.overlaps == 0 and len(receiver.accepted) == 4
        with store.session() as db:
            pending = db.scalar(sa.select(sa.func.count()).where(Delivery.delivered_at.is_(None)))
        assert pending == 0
    finally:
        if worker is not None:
            worker.stop()
        subscriber.close()
        receiver.close()
        broker.stop()
        app.state.server.store.close()


def test_the_probe_crop_goes_only_where_the_admin_opted_in_and_the_choice_is_audited(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    plain, pictures = tmp_path / "plain.jsonl", tmp_path / "pictures.jsonl"
    sinks = {
        "plain": {"type": "jsonl", "url": str(plain)},
        "pictures": {"type": "jsonl", "url": str(pictures), "include_probe": True},
        "remote": {"type": "webhook", "url": "https://user:pw@hooks.example.org/p?token=t0k", "enabled": False},
    }
    configure(monkeypatch, OPENLFR_SINKS=json.dumps(sinks))
    app = build_app()
    worker: DeliveryWorker | None = None
    try:
        store = app.state.server.store
        assert audit_sinks(store, get_settings()) == 3
        assert audit_sinks(store, get_settings()) == 0, "audited again only when they change"
        with store.session() as db:
            entries = dict(db.execute(sa.select(AuditEntry.target, AuditEntry.details)).all())
        assert entries["sink:pictures"]["include_probe"] is True and entries["sink:plain"]["include_probe"] is False
        assert "pw" not in json.dumps(entries) and "t0k" not in json.dumps(entries)  # no credentials on the record
        for name, role in [("olly", Role.OPERATOR), ("ava", Role.AUTHORISER)]:
            add_user(app, name, role)
        add_watchlist(app)
        olly, ava = login(app, "olly"), login(app, "ava")
        body = draft_body(datetime.now(UTC) - timedelta(seconds=5), sinks=["plain", "pictures"])
        drafted = olly.post("/api/deployments", json=body).json()
        assert ava.post(f"/api/deployments/{drafted['id']}/authorise", json={"justification": JUSTIFICATION}).is_success
        AlertDatabase(store).write(found("P001", 7), watchlist_name="wanted", names={}, deployment_id=drafted["id"])
        with store.session() as db:  # the outbox never holds the picture: retention's purge of the alert reaches it
            assert all("probe_jpeg_base64" not in payload for payload in db.scalars(sa.select(Delivery.payload)))
        worker = DeliveryWorker(store, get_settings().sinks, retry_max_s=1.0, poll_s=0.2)
        worker.start()
        wait_for("both files", lambda: plain.exists() and pictures.exists(), 30)
        sent_plain, sent_pictures = json.loads(plain.read_text()), json.loads(pictures.read_text())
        assert "probe_jpeg_base64" not in sent_plain
        assert base64.b64decode(sent_pictures["probe_jpeg_base64"]) == PROBE
        assert sent_pictures | {"probe_jpeg_base64": None} == sent_plain | {"probe_jpeg_base64": None}
        later = datetime.now(UTC) + timedelta(seconds=get_settings().probe_retention_seconds + 60)
        with store.session() as db:  # retention takes the outbox's rows with the probe: nothing of them stays
            enforce_retention(
                db, Context.system(get_settings(), audit_key(get_settings())), policy_of(get_settings()), later
            )
            assert db.scalar(sa.select(sa.func.count()).select_from(Delivery)) == 0
        changed = {**sinks, "pictures": {**sinks["pictures"], "include_probe": False}}
        monkeypatch.setenv("OPENLFR_SINKS", json.dumps(changed))
        get_settings.cache_clear()
        assert audit_sinks(store, get_settings()) == 1, "turning it off is on the record too"
    finally:
        if worker is not None:
            worker.stop()
        app.state.server.store.close()


def alerts_counted(text: str, deployment_id: int, camera: str) -> float:
    """``openlfr_camera_alerts_total`` of one camera in a /metrics answer (0 before its first alert)."""
    wanted = {"deployment_id": str(deployment_id), "camera": camera}
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "openlfr_camera_alerts_total" and sample.labels == wanted
    )


def test_the_committed_alert_event_is_announced_once_per_commit(
    monkeypatch: pytest.MonkeyPatch, store_url: str
) -> None:
    """This process's commits and another process's (its own connection pool: seen by NOTIFY on PostgreSQL, by the
    poll on SQLite) are each announced once, and the camera's tile marks and serve's alert counter follow that event
    and nothing else (the alerts here never pass through a pipeline's dispatcher)."""
    from fastapi.testclient import TestClient

    configure(monkeypatch)
    app = build_app()
    told: list[int] = []
    other = None
    with TestClient(app) as http:  # the lifespan starts the event board, as in `serve`
        try:
            app.state.server.events.subscribe_alerts(lambda alert: told.append(alert.id))
            for name, role in [("olly", Role.OPERATOR), ("ava", Role.AUTHORISER), ("adam", Role.ADMIN)]:
                add_user(app, name, role)
            admin = {"Authorization": f"Bearer {bearer_token(app, 'adam')}"}
            add_watchlist(app)
            olly, ava = login(app, "olly"), login(app, "ava")
            drafted = olly.post("/api/deployments", json=draft_body(datetime.now(UTC) - timedelta(seconds=5))).json()
            answer = ava.post(f"/api/deployments/{drafted['id']}/authorise", json={"justification": JUSTIFICATION})
            assert answer.is_success
            deployment = drafted["id"]
            counted_before = alerts_counted(http.get("/metrics", headers=admin).text, deployment, "entrance")
            database = AlertDatabase(app.state.server.store)
            first, _ = database.write(found("P001", 1), watchlist_name="wanted", names={}, deployment_id=deployment)
            wait_for("the first alert's event", lambda: told == [first.id], 30)
            second, _ = database.write(found("P002", 2), watchlist_name="wanted", names={}, deployment_id=deployment)
            wait_for("the second alert's event", lambda: told == [first.id, second.id], 30)
            database.write(found("P002", 2), watchlist_name="wanted", names={}, deployment_id=deployment)
            other = open_store(get_settings())  # another process's store: its commits reach this one by the database
            third, _ = AlertDatabase(other).write(
                found("P001", 3), watchlist_name="wanted", names={}, deployment_id=deployment
            )
            wait_for("the other process's alert's event", lambda: told == [first.id, second.id, third.id], 30)
            time.sleep(1.5)  # the same sighting again is no new alert: no event
            assert told == [first.id, second.id, third.id]
            tiles = app.state.server.tiles
            assert tiles.marks(deployment, "entrance") == {1: "P001", 2: "P002", 3: "P001"}
            counted = alerts_counted(http.get("/metrics", headers=admin).text, deployment, "entrance")
            assert counted - counted_before == 3, "each committed alert counted once, a repeated sighting never"
        finally:
            if other is not None:
                other.close()
            app.state.server.store.close()


def test_senders_in_two_processes_share_the_rows_without_sending_one_twice(
    monkeypatch: pytest.MonkeyPatch, store_url: str, tmp_path: Path
) -> None:
    """Two delivery workers, each on its own connection pool (as two processes are), with a receiver that takes
    its time: each row is sent by one of them, once, in commit order per deployment."""
    receiver = SigningReceiver(hold_s=0.02)
    secret = tmp_path / "hook.secret"
    secret.write_text(SECRET)
    hook = {"type": "webhook", "url": receiver.url, "secret_file": str(secret)}
    configure(monkeypatch, OPENLFR_SINKS=json.dumps({"hook": hook}))
    app = build_app()
    other = open_store(get_settings())
    workers: list[DeliveryWorker] = []
    try:
        for name, role in [("olly", Role.OPERATOR), ("ava", Role.AUTHORISER)]:
            add_user(app, name, role)
        add_watchlist(app)
        olly, ava = login(app, "olly"), login(app, "ava")
        keys: dict[int, list[str]] = {}
        store = app.state.server.store
        for _ in range(2):
            body = draft_body(datetime.now(UTC) - timedelta(seconds=5), sinks=["hook"])
            drafted = olly.post("/api/deployments", json=body).json()
            assert ava.post(
                f"/api/deployments/{drafted['id']}/authorise", json={"justification": JUSTIFICATION}
            ).is_success
            keys[drafted["id"]] = []
        database = AlertDatabase(store)
        for track in range(1, 7):
            for deployment, listed in keys.items():
                record, _ = database.write(
                    found(f"P00{track % 3}", track), watchlist_name="wanted", names={}, deployment_id=deployment
                )
                listed.append(record.uid)
        workers = [DeliveryWorker(s, get_settings().sinks, retry_max_s=0.5, poll_s=0.05) for s in (store, other)]
        for worker in workers:
            worker.start()
        everything = {key for listed in keys.values() for key in listed}
        wait_for("every alert delivered", lambda: set(receiver.accepted) >= everything, 60)
        time.sleep(0.5)
    finally:
        for worker in workers:
            worker.stop()
        receiver.close()
        other.close()
        app.state.server.store.close()
    assert sorted(receiver.accepted) == sorted(everything) and receiver.overlaps == 0 and receiver.conflicts == 0
    for listed in keys.values():
        assert [key for key in receiver.accepted if key in listed] == listed
    assert sum(worker.delivered["hook"] for worker in workers) == len(everything), "each row sent by one of them"
