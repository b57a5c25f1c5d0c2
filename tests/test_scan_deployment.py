"""`openlfr scan` on synthetic clips of a real face: inside a deployment authorised in the server (by another
person), with its snapshot and threshold, refused when it may not match; bad sources beside a good camera;
webhook and MQTT sinks from the command line."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from openlfr.clock import utc_now
from openlfr.services import deployments
from openlfr.services.audit_log import audit_key
from openlfr.services.context import Context
from openlfr.settings import get_settings
from openlfr.store.alert_models import Alert
from openlfr.store.db import open_store
from tests.streamkit import openlfr_env, portrait, run_openlfr, write_face_clip

pytestmark = pytest.mark.slow


def authorised_deployment(data_dir: Path, clip: Path, *, cancel: bool = False) -> int:
    settings = get_settings()
    assert settings.data_dir == data_dir
    store = open_store(settings)
    key = audit_key(settings)
    author = Context(settings, key, "olly", "operator")
    authoriser = Context(settings, key, "ava", "authoriser")
    try:
        with store.session() as db:
            row = deployments.create_draft(
                db,
                author,
                name="entrance",
                place="test station",
                purpose="find the listed astronaut",
                starts_at=utc_now() - timedelta(minutes=1),
                ends_at=utc_now() + timedelta(hours=1),
                cameras=[{"name": "entrance", "source": str(clip)}],
                watchlist="space",
                threshold=0.8,
                target_fpir=None,
            )
            deployment_id = row.id
        with store.session() as db:
            deployments.authorise(db, authoriser, deployment_id, "the listed person is expected at this station today")
        if cancel:
            with store.session() as db:
                deployments.cancel(db, authoriser, deployment_id, "no longer needed")
    finally:
        store.close()
    return deployment_id


@pytest.fixture
def enrolled(isolated_data_dir: Path, tmp_path: Path, astronaut: np.ndarray) -> tuple[Path, Path]:
    photo = tmp_path / "eileen.png"
    Image.fromarray(astronaut).save(photo)
    env = openlfr_env(isolated_data_dir)
    assert run_openlfr(["watchlist", "create", "space"], env).returncode == 0
    person = ["--person", "E-1", "--name", "Eileen", "--category", "other", "--face", "largest"]
    done = run_openlfr(["watchlist", "add", "space", *person, "--image", str(photo)], env)
    assert done.returncode == 0, done.stderr
    clip = write_face_clip(tmp_path / "entrance.mp4", portrait(astronaut), seconds=2.0)
    return isolated_data_dir, clip


def test_a_scan_inside_an_authorised_deployment(enrolled: tuple[Path, Path]) -> None:
    data_dir, clip = enrolled
    deployment_id = authorised_deployment(data_dir, clip)
    # No sources on the command line: the deployment's own cameras.
    done = run_openlfr(["scan", "--deployment", str(deployment_id), "--json"], openlfr_env(data_dir))
    assert done.returncode == 0, done.stderr
    output = [json.loads(line) for line in done.stdout.splitlines()]
    alerts = [o for o in output if o["type"] == "alert"]
    assert [(a["person"], a["camera"]) for a in alerts] == [("E-1", "entrance")]
    store = open_store(get_settings())
    try:
        with store.session() as db:
            (row,) = db.scalars(sa.select(Alert)).all()
            assert row.deployment_id == deployment_id and row.threshold == pytest.approx(0.8)
            # The reference is the deployment's snapshot image (what the authoriser approved).
            assert row.reference_image_id is not None
            deployment = deployments.get_deployment(db, deployment_id)
            assert deployment.frames == 30 and deployment.faces_seen > 0 and deployment.alerts_raised == 1
    finally:
        store.close()


def test_a_scan_refuses_a_deployment_that_may_not_match(enrolled: tuple[Path, Path]) -> None:
    data_dir, clip = enrolled
    deployment_id = authorised_deployment(data_dir, clip, cancel=True)
    done = run_openlfr(["scan", str(clip), "--deployment", str(deployment_id)], openlfr_env(data_dir))
    assert done.returncode == 2
    assert f"deployment {deployment_id} may not match now: the deployment was cancelled" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_sources_beside_a_good_camera(enrolled: tuple[Path, Path], tmp_path: Path) -> None:
    """Each bad source gets its own clear error line; the good camera runs on and raises its alert."""
    from tests.streamkit import GarbageServer, free_port

    data_dir, clip = enrolled
    text = tmp_path / "notes.mp4"
    text.write_text("shopping list\n" * 50)
    garbage = GarbageServer()
    sources = [
        str(clip),
        str(tmp_path / "missing.mp4"),
        str(text),
        f"rtsp://127.0.0.1:{free_port()}/cam",
        f"http://127.0.0.1:{garbage.port}/live",
    ]
    try:
        done = run_openlfr(
            ["scan", *sources, "--watchlist", "space", "--json"],
            openlfr_env(data_dir, OPENLFR_STREAM_RECONNECT_ATTEMPTS="2"),
        )
    finally:
        garbage.close()
    assert done.returncode == 0, done.stderr
    output = [json.loads(line) for line in done.stdout.splitlines()]
    errors = {o["camera"]: o["message"] for o in output if o["type"] == "error"}
    assert set(errors) == {"missing", "notes", "127.0.0.1-cam", "127.0.0.1-live"}
    assert "no such file" in errors["missing"] and "not a video" in errors["notes"]
    assert "connection refused" in errors["127.0.0.1-cam"]
    assert [(o["person"], o["camera"]) for o in output if o["type"] == "alert"] == [("E-1", "entrance")]
    assert output[-1]["type"] == "summary" and output[-1]["frames"] == 30
    for message in errors.values():  # also on stderr, one line each, for a person
        assert message in done.stderr


def test_scan_announces_to_a_webhook_and_an_mqtt_broker(enrolled: tuple[Path, Path], tmp_path: Path) -> None:
    import threading

    import paho.mqtt.client as mqtt

    from tests.streamkit import Mosquitto, webhook_receiver

    data_dir, clip = enrolled
    broker = Mosquitto(tmp_path)
    broker.start()
    received: list[bytes] = []
    subscribed = threading.Event()
    listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    listener.on_connect = lambda c, u, f, r, p: c.subscribe("openlfr/alerts/#", qos=1)
    listener.on_subscribe = lambda c, u, m, r, p: subscribed.set()
    listener.on_message = lambda c, u, message: received.append(message.payload)
    listener.connect("127.0.0.1", broker.port)
    listener.loop_start()
    try:
        assert subscribed.wait(5)
        with webhook_receiver([500, 200]) as server:
            url = f"http://127.0.0.1:{server.server_address[1]}/hook"
            args = ["scan", str(clip), "--watchlist", "space", "--json", "--webhook", url]
            done = run_openlfr([*args, "--mqtt", f"127.0.0.1:{broker.port}"], openlfr_env(data_dir))
            assert done.returncode == 0, done.stderr
            posted = [json.loads(body) for status, _, body in server.requests]
    finally:
        listener.loop_stop()
        listener.disconnect()
        broker.stop()
    (alert,) = [json.loads(line) for line in done.stdout.splitlines() if '"alert"' in line]
    assert len(posted) == 2 and posted[0]["key"] == posted[1]["key"], "retried once after the 500, then delivered"
    assert posted[1]["person"]["reference_id"] == alert["person"] == "E-1" and posted[1]["camera"] == "entrance"
    (message,) = [json.loads(payload) for payload in received]
    assert message["key"] == posted[1]["key"] and message["camera"] == "entrance"


def test_a_scan_resends_what_an_earlier_scan_could_not_deliver(enrolled: tuple[Path, Path]) -> None:
    from tests.sinkkit import SigningReceiver

    data_dir, clip = enrolled
    receiver = SigningReceiver(secret="", refusing=True)
    env = openlfr_env(data_dir, OPENLFR_SCAN_DELIVERY_WAIT_SECONDS="2")
    try:
        args = ["scan", str(clip), "--watchlist", "space", "--json", "--webhook", receiver.url + "?token=s3cret"]
        first = run_openlfr(args, env)
        assert first.returncode == 0, first.stderr
        assert receiver.refused >= 1 and not receiver.accepted
        assert "not delivered to webhook:" in first.stderr and "next scan to the same sink" in first.stderr
        assert "s3cret" not in first.stderr + first.stdout  # a token in the URL is never printed, logged or stored
        for stored in data_dir.glob("openlfr.db*"):  # the database and its write-ahead log
            assert b"s3cret" not in stored.read_bytes(), stored.name
        receiver.refusing = False
        second = run_openlfr(args, env)
        assert second.returncode == 0, second.stderr
    finally:
        receiver.close()
    events = receiver.events
    assert len(events) == 2 and len(set(receiver.accepted)) == 2, "the first scan's alert, then the second's"
    assert events[0]["deployment_id"] < events[1]["deployment_id"]
    assert [event["person"]["reference_id"] for event in events] == ["E-1", "E-1"]
