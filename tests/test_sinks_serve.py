"""The sinks end to end (issue 18): a deployment of the Hamilton clip drafted with a webhook sink and an MQTT sink,
authorised, run by a real ``openlfr serve``: the webhook receiver (which checks the HMAC) and an MQTT subscriber
each get Lin-Manuel Miranda's alert once, with no image bytes; then the operator's decision and the second
operator's verification arrive as events of their own."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from openlfr.governance.roles import Role
from tests.conftest import OPENLFR_BIN, require_data
from tests.serverkit import (
    JUSTIFICATION,
    add_user,
    build_app,
    clip_deployment_body,
    configure,
    enrol_upload,
    free_port,
    login,
)
from tests.sinkkit import SECRET, SigningReceiver, Subscriber
from tests.streamkit import Mosquitto
from tests.waitkit import hang_guard, wait_for

pytestmark = [pytest.mark.data, pytest.mark.slow]


def test_serve_sends_the_alert_and_its_decisions_to_a_webhook_and_mqtt(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clip = require_data("video", "short_hamilton_clip.mp4")
    stills = require_data("stills")
    broker = Mosquitto(tmp_path)
    broker.start()
    receiver = SigningReceiver()
    subscriber = Subscriber(broker.port, "ops/#")
    secret = tmp_path / "hook.secret"
    secret.write_text(SECRET)
    sinks = {
        "control-room": {"type": "webhook", "url": receiver.url, "secret_file": str(secret)},
        # Each sink chooses what it hears of: the street's devices get no camera events.
        "street": {"type": "mqtt", "url": f"mqtt://127.0.0.1:{broker.port}/ops", "events": ["alert", "decision"]},
    }
    configure(monkeypatch, OPENLFR_SINKS=json.dumps(sinks))
    app = build_app()  # no pipelines here: `serve` runs them
    log = tmp_path / "serve.log"
    serve: subprocess.Popen[bytes] | None = None
    try:
        for name, role in [
            ("ann", Role.ADMIN),
            ("olly", Role.OPERATOR),
            ("omar", Role.OPERATOR),
            ("ava", Role.AUTHORISER),
        ]:
            add_user(app, name, role)
        ann, olly, omar, ava = login(app, "ann"), login(app, "olly"), login(app, "omar"), login(app, "ava")
        assert ann.post("/api/watchlists", json={"name": "hamilton", "purpose": "sinks test"}).status_code == 201
        enrol_upload(ann, "hamilton", "LMM-001", "Lin-Manuel Miranda", [stills / "lin-manuel-miranda.png"])
        body = clip_deployment_body(clip, "hamilton") | {"sinks": ["control-room", "street"]}
        deployment = olly.post("/api/deployments", json=body).json()
        page = ava.get(f"/deployments/{deployment['id']}").text
        assert "control-room" in page and "street" in page  # the authoriser sees where its alerts go
        authorised = ava.post(f"/api/deployments/{deployment['id']}/authorise", json={"justification": JUSTIFICATION})
        assert authorised.status_code == 200, authorised.text

        serve = subprocess.Popen(
            [str(OPENLFR_BIN), "serve", "--host", "127.0.0.1", "--port", str(free_port())],
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
        )

        def exited() -> str | None:
            return None if serve is None or serve.poll() is None else f"serve exited: {log.read_text()[-2000:]}"

        def reviewed() -> list[dict[str, Any]]:  # the control room also hears of the camera's states
            return [event for event in receiver.events if event["event"] != "camera"]

        wait_for("the webhook's alert", lambda: bool(reviewed()), 120, every=0.5, gone=exited)
        wait_for("the MQTT alert", lambda: bool(subscriber.messages), 30, gone=exited)
        alert = reviewed()[0]
        assert alert["event"] == "alert" and alert["person"]["reference_id"] == "LMM-001"
        assert alert["person"]["name"] == "Lin-Manuel Miranda" and alert["person"]["category"] == "wanted_offence"
        assert alert["camera"] == "stage" and alert["kind"] == "live" and alert["deployment_id"] == deployment["id"]
        assert receiver.unsigned == 0, "every request carries a valid HMAC signature"
        assert all(b"jpeg" not in body.lower() and b"\xff\xd8" not in body for body in receiver.bodies.values())
        (topic, message), *_ = subscriber.messages
        assert topic.startswith("ops/alert/") and message == alert

        alert_id = alert["alert_id"]
        assert olly.post(f"/api/alerts/{alert_id}/decision", json={"decision": "confirmed"}).status_code == 200
        assert omar.post(f"/api/alerts/{alert_id}/verify").status_code == 200
        wait_for("the decision and the verification", lambda: len(reviewed()) >= 3, 60, gone=exited)
        wait_for("them on MQTT", lambda: len(subscriber.messages) >= 3, 30, gone=exited)
    finally:
        if serve is not None:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(timeout=hang_guard(30))
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait()
        subscriber.close()
        receiver.close()
        broker.stop()
        app.state.server.store.close()
    events = [(event["event"], event.get("by"), event["key"]) for event in reviewed()]
    uid = alert["key"]
    assert events == [
        ("alert", None, uid),
        ("decision", "olly", f"{uid}:decision"),
        ("verification", "omar", f"{uid}:verification"),
    ]
    assert [message["event"] for _, message in subscriber.messages] == ["alert", "decision", "verification"]
    assert len(receiver.accepted) == len(set(receiver.accepted)) and receiver.conflicts == 0, "each event once"
    assert reviewed()[1]["decision"] == "confirmed"
    assert any(event["event"] == "camera" for event in receiver.events), "the camera's states reach the control room"
