"""A camera URL is a secret (issue 17, items 1, 2 and 17a): ``/health`` tells an anonymous caller its status only;
answers and pages show every camera URL redacted, the database keeps it sealed, and only the capture opens it;
the admin's ``OPENLFR_CAMERA_ALLOWED_HOSTS`` limits the hosts a camera may be read from, at draft and at connect.
The scan of everything a live server shows is in tests/test_secret_scan.py."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from openlfr.stream.source import CameraConfig, Capture, CaptureOptions, SourceError
from openlfr.urls import CameraHostRefused, check_camera_host, redact_text, redact_url
from tests.serverkit import JUSTIFICATION, add_cast, add_watchlist, build_app, configure, draft_body, login

PASSWORD = "S3cretCamPass-unit"
TOKEN = "tok-5f3a9c1e-unit"
RTSP = f"rtsp://camadmin:{PASSWORD}@127.0.0.1:9/stream1"
HTTP = f"http://127.0.0.1:8499/x?token={TOKEN}"


def test_redact_url_hides_passwords_query_values_and_fragments() -> None:
    assert redact_url(RTSP) == "rtsp://camadmin:***@127.0.0.1:9/stream1"
    assert redact_url(HTTP) == "http://127.0.0.1:8499/x?token=***"
    assert redact_url("https://h/p?a=1&flag#k=v") == "https://h/p?a=***&***#***"
    for plain in ("rtsp://127.0.0.1:8554/cam", "/srv/footage/clip.mp4", "camera:0", "/dev/video0"):
        assert redact_url(plain) == plain
    said = redact_text(f"camera 'gate' ({RTSP}): Server returned 401 for '{HTTP}'")
    assert PASSWORD not in said and TOKEN not in said and "rtsp://camadmin:***@127.0.0.1:9/stream1" in said


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    configure(monkeypatch, OPENLFR_CAMERA_ALLOWED_HOSTS="127.0.0.0/8, cams.example.org")
    application = build_app()
    add_cast(application, "ann", "olly", "ava", "aud")
    add_watchlist(application)
    yield application
    application.state.server.store.close()


def drafted(app, cameras: list[dict[str, str]]) -> int:  # type: ignore[no-untyped-def]
    body = draft_body(datetime.now(UTC) - timedelta(minutes=1), cameras=cameras)
    answer = login(app, "olly").post("/api/deployments", json=body)
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def test_anonymous_health_says_status_only_and_the_detail_needs_a_login(app) -> None:  # type: ignore[no-untyped-def]
    anonymous = TestClient(app).get("/health")
    assert anonymous.status_code == 200
    assert anonymous.json() == {"status": "ok", "database": "up"}
    detailed = login(app, "aud").get("/health").json()
    assert detailed["status"] == "ok" and detailed["database"] == "up"
    assert detailed["database_probe"]["ok"] is True and "pipelines" in detailed
    live = TestClient(app).get("/health/live")
    assert live.status_code == 200 and live.json() == {"status": "live"}


def test_every_answer_shows_camera_urls_redacted_and_the_store_keeps_them_sealed(app) -> None:  # type: ignore[no-untyped-def]
    from openlfr.services.camera_secrets import opened
    from openlfr.store.governance_models import AuditEntry, Deployment

    deployment_id = drafted(app, [{"name": "gate", "source": RTSP}, {"name": "yard", "source": HTTP}])
    ava = login(app, "ava")
    assert ava.post(f"/api/deployments/{deployment_id}/authorise", json={"justification": JUSTIFICATION}).is_success
    for who in ("aud", "olly", "ann", "ava"):
        client = login(app, who)
        shown = client.get(f"/api/deployments/{deployment_id}").json()["cameras"]
        assert [c["source"] for c in shown] == [
            "rtsp://camadmin:***@127.0.0.1:9/stream1",
            "http://127.0.0.1:8499/x?token=***",
        ], who
        for path in ("/api/deployments", f"/deployments/{deployment_id}", "/deployments", "/api/audit"):
            text = client.get(path).text
            assert PASSWORD not in text and TOKEN not in text, (who, path)
    with app.state.server.sessions() as db:
        row = db.get(Deployment, deployment_id)
        stored = repr(row.cameras) + repr([(a.action, a.details) for a in db.scalars(sa.select(AuditEntry))])
        assert PASSWORD not in stored and TOKEN not in stored
        # Only the capture's side opens them, with the server's camera key (outside the database).
        assert [opened(app.state.server.settings, c)["source"] for c in row.cameras] == [RTSP, HTTP]


def test_a_camera_host_outside_the_allow_list_is_refused_at_draft(app) -> None:  # type: ignore[no-untyped-def]
    body = draft_body(datetime.now(UTC), cameras=[{"name": "far", "source": f"rtsp://u:{PASSWORD}@10.20.30.40/s"}])
    answer = login(app, "olly").post("/api/deployments", json=body)
    assert answer.status_code == 400 and "OPENLFR_CAMERA_ALLOWED_HOSTS" in answer.text, answer.text
    assert PASSWORD not in answer.text
    for allowed in ("rtsp://127.0.0.1:8554/cam", "rtsp://cams.example.org/s", "/srv/clip.mp4", "camera:0"):
        check_camera_host(allowed, "127.0.0.0/8, cams.example.org")
    check_camera_host("rtsp://10.20.30.40/s", "")  # empty: every host
    with pytest.raises(CameraHostRefused):
        check_camera_host("rtsp://localhost.localdomain.invalid/s", "127.0.0.0/8")
    with pytest.raises(CameraHostRefused):
        check_camera_host("http://[::1]:80/x", "127.0.0.0/8")


def test_a_camera_host_outside_the_allow_list_is_refused_at_connect() -> None:
    """The capture checks before it connects (a deployment drafted under a wider list, a changed DNS answer): a
    listener on an address outside the list is never reached."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.2", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        camera = CameraConfig("gate", f"rtsp://camadmin:{PASSWORD}@127.0.0.2:{port}/s")
        options = CaptureOptions(reconnect_attempts=1, open_timeout_s=2.0, allowed_hosts="127.0.0.1/32")
        with pytest.raises(SourceError) as refused:
            next(Capture(camera, options).frames())
        assert "OPENLFR_CAMERA_ALLOWED_HOSTS" in str(refused.value) and PASSWORD not in str(refused.value)
        reached = threading.Event()
        listener.settimeout(0.5)  # a connection made would already wait in the backlog
        try:
            listener.accept()[0].close()
            reached.set()
        except TimeoutError:
            pass
        assert not reached.is_set(), "the capture connected to a host the admin does not allow"


def test_capture_errors_show_the_url_redacted(tmp_path: Path) -> None:
    camera = CameraConfig("gate", f"rtsp://camadmin:{PASSWORD}@127.0.0.1:9/stream1?token={TOKEN}")
    with pytest.raises(SourceError) as failed:
        next(Capture(camera, CaptureOptions(reconnect_attempts=1, open_timeout_s=2.0)).frames())
    assert PASSWORD not in str(failed.value) and TOKEN not in str(failed.value)
    assert "rtsp://camadmin:***@127.0.0.1:9/stream1" in str(failed.value)
    assert PASSWORD not in repr(camera)


def test_camera_urls_stored_before_sealing_are_sealed_at_start_up(app) -> None:  # type: ignore[no-untyped-def]
    """A deployment written before URLs were sealed (its row holds the plain URL) is sealed when a server starts."""
    from openlfr.services.camera_secrets import opened
    from openlfr.store.governance_models import Deployment

    deployment_id = drafted(app, [{"name": "gate", "source": "rtsp://127.0.0.1:8554/cam"}])
    with app.state.server.sessions() as db:
        db.execute(sa.update(Deployment).values(cameras=[{"name": "gate", "source": RTSP}]))
        db.commit()
    with TestClient(build_app()) as started:  # the lifespan runs: what a server does at start-up
        assert started.get("/health/live").status_code == 200
    with app.state.server.sessions() as db:
        cameras = db.get(Deployment, deployment_id).cameras
    assert PASSWORD not in repr(cameras) and cameras[0]["source"] == redact_url(RTSP)
    assert opened(app.state.server.settings, cameras[0])["source"] == RTSP
    key = Path(app.state.server.settings.data_dir) / "camera.key"
    assert key.stat().st_mode & 0o777 == 0o600
