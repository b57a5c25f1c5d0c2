"""Uploads against a real ``openlfr serve`` on 127.0.0.1: anonymous 95 MB multipart bodies are refused without
being read (the server's resident memory hardly moves), a tiny PNG declaring 7,700 x 7,700 pixels is refused from
its header, and a server killed with SIGKILL mid-enrolment leaves the uploaded photo nowhere once it has started
again (uploads are staged under the data directory, swept and audited at start-up; never the system temp folder).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from PIL import Image

from openlfr.clock import utc_now
from openlfr.governance.roles import Role
from openlfr.services import accounts
from openlfr.services.upload_staging import FOLDER
from openlfr.settings import Settings
from openlfr.store import Store, open_store
from openlfr.store.models import Watchlist
from tests.conftest import OPENLFR_BIN, require_data
from tests.serverkit import FAST_HASHING, PASSWORD, free_port

BODY_MB = 95
POSTS = 10
CHUNK = b"\x00" * (1 << 20)


class Serve:
    """``openlfr serve`` in a subprocess on a data directory and temp folder of the test's own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(exist_ok=True)
        self.data = root / "data"
        self.port = free_port()
        self.env = {
            **os.environ,
            **FAST_HASHING,
            "OPENLFR_DATA_DIR": str(self.data),
            "TMPDIR": str(self.tmp),
        }
        self.env.pop("OPENLFR_DATABASE_URL", None)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.root / "serve.log", "ab")  # noqa: SIM115 - the child writes to it until it ends
        self.process = subprocess.Popen(
            [str(OPENLFR_BIN), "serve", "--port", str(self.port), "--no-pipelines"],
            env=self.env,
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"openlfr serve exited: {(self.root / 'serve.log').read_text()[-2000:]}")
            try:
                httpx.get(f"{self.url}/health", timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        pytest.fail("openlfr serve did not answer")

    def rss_kib(self, field: str = "VmRSS") -> int:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
        raise AssertionError(field)

    def reset_peak(self) -> None:
        assert self.process is not None
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def serving(root: Path) -> Iterator[Serve]:
    server = Serve(root)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def server_store(server: Serve) -> Store:
    return open_store(Settings(data_dir=server.data, database_url=f"sqlite:///{server.data / 'openlfr.db'}"))


def admin_token(server: Serve) -> str:
    """An administrator, an API token and a watchlist, written straight into the server's store."""
    store = server_store(server)
    try:
        with store.session() as db:
            user = accounts.create_user(db, Settings(), "ann", PASSWORD, Role.ADMIN, "test")
            token = accounts.open_session(db, user, "token", timedelta(hours=1))
            db.add(Watchlist(name="wanted", purpose="tests", created_by="test", created_at=utc_now()))
        return token
    finally:
        store.close()


def operator_token(server: Serve) -> str:
    store = server_store(server)
    try:
        with store.session() as db:
            user = accounts.create_user(db, Settings(), "olly", PASSWORD, Role.OPERATOR, "test")
            return accounts.open_session(db, user, "token", timedelta(hours=1))
    finally:
        store.close()


def big_body(boundary: str) -> Iterator[bytes]:
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="a.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    for _ in range(BODY_MB):
        yield CHUNK
    yield f"\r\n--{boundary}--\r\n".encode()


def post_big(url: str, declared: bool) -> int:
    """One anonymous 95 MB multipart post; the status, or 0 when the server closed the connection first."""
    boundary = "openlfr-test-boundary"
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    if declared:
        headers["Content-Length"] = str(sum(len(part) for part in big_body(boundary)))
    try:
        return httpx.post(url, content=big_body(boundary), headers=headers, timeout=120).status_code
    except httpx.HTTPError:
        return 0


@pytest.fixture
def own_folders(tmp_path: Path) -> Path:
    return tmp_path


def test_anonymous_95_mb_multipart_posts_are_refused_unread(own_folders: Path) -> None:
    with serving(own_folders) as server:
        targets = [
            f"{server.url}/api/watchlists/wanted/people",  # an upload route: refused before its body is read
            f"{server.url}/api/search",
            f"{server.url}/api/deployments",  # any other route: over its 1 MB limit
            f"{server.url}/login",
        ]
        httpx.get(f"{server.url}/login")
        time.sleep(1)
        server.reset_peak()
        before = server.rss_kib()
        statuses: list[int] = []
        lock = threading.Lock()

        def one(index: int) -> None:
            target, declared = targets[index % len(targets)], (index // len(targets)) % 2 == 0
            status = post_big(target, declared=declared)
            with lock:
                statuses.append(status)
                print(f"  {target} {'declared' if declared else 'chunked'}: {status}")

        threads = [threading.Thread(target=one, args=(i,)) for i in range(POSTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        peak_growth_mib = (server.rss_kib("VmHWM") - before) / 1024
        after_growth_mib = (server.rss_kib() - before) / 1024
    print(f"{POSTS} anonymous {BODY_MB} MB posts: {sorted(statuses)}; server RSS peak +{peak_growth_mib:.1f} MiB")
    assert len(statuses) == POSTS and all(status in (0, 401, 403, 413) for status in statuses), statuses
    assert any(status in (401, 413) for status in statuses)
    assert peak_growth_mib < 50 and after_growth_mib < 50


def png_bomb(side: int = 7700) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (side, side)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def test_a_tiny_png_of_7700_by_7700_pixels_is_refused_from_its_header(own_folders: Path) -> None:
    bomb = png_bomb()
    with serving(own_folders) as server:
        token = admin_token(server)
        form = {"person": "X1", "display_name": "X", "category": "other"}
        started = time.perf_counter()
        answer = httpx.post(
            f"{server.url}/api/watchlists/wanted/people",
            data=form,
            files=[("images", ("bomb.png", bomb, "image/png"))],
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        )
        seconds = time.perf_counter() - started
        searched = httpx.post(
            f"{server.url}/api/search",
            data={"watchlist": "wanted", "reason": "Operation Falcon: a photo from a witness, case 114"},
            files=[("image", ("bomb.png", bomb, "image/png"))],
            headers={"Authorization": f"Bearer {operator_token(server)}"},
            timeout=120,
        )
    print(f"a {len(bomb) / 1000:.0f} KB PNG of 7700x7700: {answer.status_code} in {seconds * 1000:.0f} ms")
    assert answer.status_code == 413, answer.text
    assert "7700x7700" in answer.json()["detail"]
    assert "x-content-type-options" in answer.headers
    assert searched.status_code == 413 and "7700x7700" in searched.json()["detail"], searched.text


def files_holding(folder: Path, needle: bytes, skip: set[Path]) -> list[Path]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and path not in skip and needle in path.read_bytes():
            found.append(path)
    return found


def test_a_server_killed_mid_enrolment_leaves_no_uploaded_byte_outside_the_store(own_folders: Path) -> None:
    photo = require_data("stills", "lin-manuel-miranda.png").read_bytes()
    needle = photo[len(photo) // 2 : len(photo) // 2 + 64]  # a run of the photo's own bytes
    server = Serve(own_folders)
    server.start()
    try:
        token = admin_token(server)
        staging = server.data / FOLDER
        staged = False
        for _attempt in range(3):  # the kill must land while the photo is staged (the engine is still loading)
            upload = threading.Thread(target=enrol_quietly, args=(server, token, photo))
            upload.start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not files_holding(staging, needle, set()):
                time.sleep(0.005)
            staged = bool(files_holding(staging, needle, set()))
            server.kill()
            upload.join(timeout=30)
            if staged:
                break
            server.start()
        assert staged, "the upload was never seen staged"
        assert files_holding(staging, needle, set())  # the crash stranded it
        assert files_holding(server.tmp, needle, set()) == []  # never in the (test's own) system temp folder
        server.start()  # the restart sweeps the staging folder
        database = {server.data / name for name in ("openlfr.db", "openlfr.db-wal", "openlfr.db-shm")}
        leftovers = files_holding(server.data, needle, database) + files_holding(server.tmp, needle, set())
        assert leftovers == []
        assert list(staging.iterdir()) == []
        store = server_store(server)
        try:
            with store.session() as db:
                swept = db.execute(sa.text("SELECT actor FROM audit_log WHERE action = 'uploads.swept'")).all()
        finally:
            store.close()
        assert swept and swept[0][0] == "system"
    finally:
        server.stop()


def enrol_quietly(server: Serve, token: str, photo: bytes) -> None:
    """An enrolment upload whose answer never comes (the server is killed under it)."""
    form = {"person": "LMM-1", "display_name": "Lin-Manuel Miranda", "category": "other"}
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(
            f"{server.url}/api/watchlists/wanted/people",
            data=form,
            files=[("images", ("lmm.png", photo, "image/png"))],
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        )
