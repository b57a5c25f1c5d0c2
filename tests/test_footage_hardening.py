"""Footage uploads and retrospective drafts against one real ``openlfr serve`` (issue 17, items 9, 11 and 12):

- a refused oversize upload (413) is a refusal, not an error: no ``ERROR``, traceback, ``ClientDisconnect`` or
  uvicorn's ``Exception in ASGI application`` in the server's log;
- no answer names a server path (an upload that is not video, a draft's file), and a draft says the same for a
  file that does not exist as for one that exists outside the directories allowed (nothing to probe with);
- a partial upload (``*.part``) stranded by a SIGKILL is cleared by the next start-up's sweep, audited, while
  kept footage stays;
- uploaded footage is named by an opaque reference (``footage:NAME``), which the upload answers and a draft names:
  neither the upload's answer nor the deployment's answer, page or record holds any part of the data directory's
  path (nor does a draft that names the upload's file by its path), a file from an allowed directory is shown
  relative to it, and the capture opens the file a reference names while it shows the reference.

The checks share one server (the last one kills and restarts it).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from openlfr.services import camera_secrets
from openlfr.services.footage import FOOTAGE_DIR
from openlfr.services.live import CameraDefaults, camera_of
from openlfr.settings import Settings
from openlfr.stream.source import Capture, SourceError
from tests.serverkit import draft_body
from tests.test_upload_limits import Serve, admin_token, operator_token, server_store

MAX_FOOTAGE = 1_000_000
CHUNK = bytes(64 * 1024)
BOUNDARY = "openlfr-test-boundary"
PHOTO_PART = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="images"; filename="a.jpg"\r\n'
    "Content-Type: image/jpeg\r\n\r\n"
).encode()


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    server = Serve(tmp_path_factory.mktemp("footage-serve"))
    server.env["OPENLFR_RFR_MAX_UPLOAD_BYTES"] = str(MAX_FOOTAGE)
    server.env["OPENLFR_MAX_UPLOAD_BYTES"] = str(MAX_FOOTAGE // 10)  # a form of photos: at most ten of these
    server.env["OPENLFR_RFR_SOURCE_DIRS"] = str(server.root / "allowed")
    server.start()
    server.admin = admin_token(server)  # type: ignore[attr-defined]  # and the watchlist drafts name
    server.token = operator_token(server)  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()


def bearer(server: Serve, admin: bool = False) -> dict[str, str]:
    token = server.admin if admin else server.token  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {token}"}


def log_since(server: Serve, offset: int) -> str:
    return (server.root / "serve.log").read_bytes()[offset:].decode(errors="replace")


def log_size(server: Serve) -> int:
    return (server.root / "serve.log").stat().st_size


def chunks(total: int, gate: threading.Event | None = None, head: bytes = b"") -> Iterator[bytes]:
    """``head``, then ``total`` bytes in chunks; with a gate, the first chunk alone until the gate opens (or a
    minute passes)."""
    yield head
    sent = 0
    while sent < total:
        yield CHUNK
        sent += len(CHUNK)
        if gate is not None and sent == len(CHUNK):
            gate.wait(60)


def wait_for_log(server: Serve, offset: int, needle: str) -> str:
    """The log since ``offset`` once it holds ``needle`` (or after a bounded wait, whatever it holds)."""
    for _ in range(100):
        text = log_since(server, offset)
        if needle in text:
            return text
        time.sleep(0.1)
    return log_since(server, offset)


def test_an_oversize_upload_is_refused_without_an_error_in_the_log(serve: Serve) -> None:
    offset = log_size(serve)
    statuses = []
    for url, method in [
        (f"{serve.url}/api/footage?name=big.mp4", "PUT"),  # streamed to disk by the route
        (f"{serve.url}/api/watchlists/wanted/people", "POST"),  # read as a form
    ]:
        form = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"} if method == "POST" else {}
        headers = {**bearer(serve, admin=method == "POST"), **form}  # an admin enrols, an operator uploads footage
        body = chunks(12 * MAX_FOOTAGE, head=PHOTO_PART if method == "POST" else b"")
        try:
            answer = httpx.request(method, url, content=body, headers=headers, timeout=60)
            statuses.append(answer.status_code)
        except httpx.HTTPError:
            statuses.append(0)  # the server closed the connection once it had refused the body
    assert 413 in statuses and set(statuses) <= {0, 413}, statuses
    # Whatever the refusal writes comes before this request's answer; the health check marks the end of it.
    assert httpx.get(f"{serve.url}/health", timeout=10).status_code == 200
    text = log_since(serve, offset)
    for sign in ("ERROR", "Traceback", "ClientDisconnect", "Exception in ASGI application", "unhandled error"):
        assert sign not in text, text
    assert not [p for p in (serve.data / FOOTAGE_DIR).iterdir() if p.suffix == ".part"]


def test_no_answer_names_a_server_path_and_a_draft_cannot_probe_the_file_system(serve: Serve) -> None:
    not_video = httpx.put(
        f"{serve.url}/api/footage?name=notes.mp4", content=b"shopping list\n" * 100, headers=bearer(serve), timeout=60
    )
    assert not_video.status_code == 400, not_video.text
    detail = not_video.json()["detail"]
    assert "notes.mp4" in detail  # the upload is named as its sender named it
    for path_sign in (str(serve.data), str(serve.root), FOOTAGE_DIR, ".part", "/"):
        assert path_sign not in detail, detail

    outside = serve.root / "outside" / "clip.mp4"
    outside.parent.mkdir(exist_ok=True)
    outside.write_bytes(b"\x00" * 4096)
    missing = serve.root / "nowhere" / "clip.mp4"
    inside_dir = serve.data / FOOTAGE_DIR
    answers = {}
    for name, source in [("exists", outside), ("missing", missing), ("folder", inside_dir)]:
        body = draft_body(datetime.now(UTC), kind="retrospective", cameras=[{"name": "cam", "source": str(source)}])
        answer = httpx.post(f"{serve.url}/api/deployments", json=body, headers=bearer(serve), timeout=60)
        assert answer.status_code == 400, answer.text
        answers[name] = answer.json()["detail"]
        assert str(serve.root) not in answers[name] and str(source) not in answers[name], answers[name]
    assert answers["exists"] == answers["missing"] == answers["folder"], answers


def tiny_video(out: Path, frames: int = 12) -> Path:
    """A small grey video (64x48, 10 fps, MPEG-4 in AVI) made with PyAV."""
    import av
    import numpy as np

    out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(out), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(frames):
            picture = av.VideoFrame.from_ndarray(np.full((48, 64, 3), index * 10, np.uint8), format="rgb24")
            container.mux(stream.encode(picture))
        container.mux(stream.encode())
    return out


def test_uploaded_footage_is_named_by_a_reference_and_no_answer_shows_the_data_directory(serve: Serve) -> None:
    clip = tiny_video(serve.tmp / "upload" / "street clip.avi")
    uploaded = httpx.put(
        f"{serve.url}/api/footage?name=street clip.avi", content=clip.read_bytes(), headers=bearer(serve), timeout=60
    )
    assert uploaded.status_code == 201, uploaded.text
    source = uploaded.json()["source"]
    assert source.startswith("footage:") and source.endswith("street_clip.avi"), source
    [kept] = [p for p in (serve.data / FOOTAGE_DIR).iterdir() if p.name.endswith("street_clip.avi")]
    allowed = tiny_video(serve.root / "allowed" / "station" / "platform.avi")

    shown: dict[str, str] = {"upload": uploaded.text}
    start = datetime.now(UTC)
    drafts = [("reference", source), ("path of the upload", str(kept)), ("allowed file", str(allowed))]
    for label, named in drafts:
        body = draft_body(start, kind="retrospective", cameras=[{"name": "cam", "source": named}])
        drafted = httpx.post(f"{serve.url}/api/deployments", json=body, headers=bearer(serve), timeout=60)
        assert drafted.status_code == 201, drafted.text
        number = drafted.json()["id"]
        [camera] = drafted.json()["cameras"]
        # The upload, however the draft named it, is shown as its reference; an allowed file relative to its folder.
        assert camera["source"] == (source if label != "allowed file" else "station/platform.avi"), camera
        shown[f"{label}: draft"] = drafted.text
        for what, path in [("answer", f"/api/deployments/{number}"), ("page", f"/deployments/{number}")]:
            answer = httpx.get(f"{serve.url}{path}", headers=bearer(serve), timeout=60)
            assert answer.status_code == 200, answer.text
            shown[f"{label}: {what}"] = answer.text
        record = httpx.get(f"{serve.url}/api/deployments/{number}/record", headers=bearer(serve), timeout=60)
        assert record.status_code == 200, record.text
        shown[f"{label}: record"] = record.text
    for what, text in shown.items():
        for path_sign in (str(serve.root), str(serve.root.parent), str(serve.data), FOOTAGE_DIR, "pytest-"):
            assert path_sign not in text, (what, path_sign, text)

    # A deployment stored before uploads had references is stored again (at start-up) naming the reference.
    settings = Settings(data_dir=serve.data)
    assert camera_secrets.sealed(settings, [{"name": "cam", "source": str(kept)}]) == [
        {"name": "cam", "source": source}
    ]
    # The capture opens the file a reference names, and shows the reference, never the path, when it fails.
    camera = camera_of(camera_secrets.opened(settings, {"name": "cam", "source": source}), CameraDefaults())
    assert Path(camera.url) == kept and camera.shown_url == source
    assert sum(1 for _ in Capture(camera).frames()) == 12
    gone = camera_of(
        camera_secrets.opened(settings, {"name": "cam", "source": "footage:0123456789abcdef-gone.avi"}),
        CameraDefaults(),
    )
    with pytest.raises(SourceError) as failed:
        list(Capture(gone).frames())
    assert str(serve.data) not in str(failed.value) and "footage:" in str(failed.value), failed.value


def test_a_partial_upload_left_by_a_sigkill_is_swept_at_start_up(serve: Serve) -> None:
    folder = serve.data / FOOTAGE_DIR
    gate = threading.Event()

    def upload() -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.put(
                f"{serve.url}/api/footage?name=cut.mp4",
                content=chunks(MAX_FOOTAGE // 2, gate),
                headers=bearer(serve),
                timeout=120,
            )

    sender = threading.Thread(target=upload)
    sender.start()
    try:
        parts: list[Path] = []
        for _ in range(600):  # the first chunk written to its .part file
            parts = [p for p in folder.iterdir() if p.suffix == ".part" and p.stat().st_size > 0]
            if parts:
                break
            time.sleep(0.1)
        assert parts, "the upload never reached its .part file"
        serve.kill()
    finally:
        gate.set()
        sender.join(timeout=120)
    assert all(p.exists() for p in parts)  # the crash stranded it
    kept = folder / "0123456789abcdef-kept.mp4"  # footage a search may still need
    kept.write_bytes(b"\x00" * 1000)
    serve.start()
    assert [p for p in folder.iterdir() if p.suffix == ".part"] == []
    assert kept.exists()
    store = server_store(serve)
    try:
        with store.session() as db:
            swept = db.execute(
                sa.text("SELECT actor, target, details FROM audit_log WHERE action = 'uploads.swept'")
            ).all()
    finally:
        store.close()
    assert [(actor, target) for actor, target, _ in swept] == [("system", f"folder:{FOOTAGE_DIR}")], swept
