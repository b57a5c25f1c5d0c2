"""The container image (`make image`, which `make test` runs first) with compose.yaml: PostgreSQL, Mosquitto, the
server and a worker brought up with podman-compose; the first admin, a watchlist from the shared gallery and a scan
of the Hamilton clip inside the server's container; /health from the host; the processes are not root.

Skips, saying why, only where podman cannot run or the image was not built; in CI (CI set) it fails instead."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_data
from tests.postgres import _free_port

pytestmark = [pytest.mark.slow, pytest.mark.data]

ROOT = Path(__file__).resolve().parent.parent
VERSION = next(
    line.split('"')[1] for line in (ROOT / "pyproject.toml").read_text().splitlines() if line.startswith("version =")
)
IMAGE = os.environ.get("OPENLFR_IMAGE", f"localhost/openlfr:{VERSION}")
# the stand-ins `make image` builds from Debian's packages where no container registry is reachable
POSTGRES_IMAGE = os.environ.get("OPENLFR_POSTGRES_IMAGE", "localhost/openlfr-postgres:bookworm")
MOSQUITTO_IMAGE = os.environ.get("OPENLFR_MOSQUITTO_IMAGE", "localhost/openlfr-mosquitto:bookworm")
CONTAINERS_CONF = ROOT / "deploy" / "podman" / "containers.conf"
# the site's CA bundle (a TLS-inspecting proxy): read-only in the containers, as `make image` gives it to the build
SITE_CA = Path(os.environ.get("SITE_CA", "/etc/ssl/certs/ca-certificates.crt"))
ADMIN_PASSWORD = "a container smoke test " + secrets.token_hex(8)
START_DEADLINE_S = 600  # a hang guard on a busy machine, not a budget


def cannot_run(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"the container smoke test cannot run in CI: {reason}")
    pytest.skip(reason)


@dataclass
class Stack:
    project: str
    env: dict[str, str]
    port: int

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        files = ["-f", str(ROOT / "compose.yaml")]
        if "SITE_CA" in self.env:
            files += ["-f", str(ROOT / "deploy" / "compose.site-ca.yaml")]
        return run(["podman-compose", "-p", self.project, *files, *args], self.env, timeout)

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"  # podman-compose's naming

    def openlfr(self, *args: str, stdin: str | None = None, timeout: float = 600) -> str:
        """`openlfr ARGS` inside the server's container, as its user (the image's openlfr reads the secrets)."""
        result = run(["podman", "exec", "-i", self.container("serve"), "openlfr", *args], self.env, timeout, stdin)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        return result.stdout


def run(
    command: list[str], env: dict[str, str], timeout: float, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)


def first_admin(stack: Stack) -> None:
    """`openlfr init` as the getting-started page has it: the first admin, password on stdin, on the compose
    stack's PostgreSQL (OPENLFR_DATABASE_URL) and data directory (/data); a second init is refused."""
    initialised = stack.openlfr("init", "--admin", "admin", stdin=ADMIN_PASSWORD + "\n")
    assert "initialised: data /data" in initialised and "postgresql" in initialised, initialised
    db_password = (Path(stack.env["OPENLFR_SECRETS"]) / "db_password").read_text().strip()
    assert ADMIN_PASSWORD not in initialised and db_password not in initialised
    init = ["podman", "exec", "-i", stack.container("serve"), "openlfr", "init"]
    again = run(init, stack.env, 120, ADMIN_PASSWORD + "\n")
    assert again.returncode != 0 and "an administrator exists already" in again.stderr, again.stdout + again.stderr


def wait_for(what: str, ready: object) -> None:
    deadline = time.monotonic() + START_DEADLINE_S
    while not ready():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} not ready after {START_DEADLINE_S} s"
        time.sleep(2)


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_data("stills", "gallery")  # before anything is started
    require_data("video", "short_hamilton_clip.mp4")
    for tool in ("podman", "podman-compose"):
        if shutil.which(tool) is None:
            cannot_run(f"{tool} is not installed (make image installs it as root)")
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    info = run(["podman", "info"], env, 120)
    if info.returncode != 0:
        cannot_run(f"podman cannot run here: {info.stderr.strip().splitlines()[-1:]}")
    for image in (IMAGE, POSTGRES_IMAGE, MOSQUITTO_IMAGE):
        if run(["podman", "image", "exists", image], env, 60).returncode != 0:
            cannot_run(f"no image {image}: run make image")
    secrets_dir = tmp_path_factory.mktemp("secrets")
    (secrets_dir / "db_password").write_text(secrets.token_hex(16) + "\n")
    (secrets_dir / "audit_key").write_text(secrets.token_hex(32) + "\n")
    (secrets_dir / "camera_key").write_text(__import__("base64").urlsafe_b64encode(os.urandom(32)).decode() + "\n")
    for secret in secrets_dir.iterdir():
        secret.chmod(0o644)  # read by the containers' own users; the folder is the test's
    port = _free_port()
    env.update(
        OPENLFR_IMAGE=IMAGE,
        OPENLFR_POSTGRES_IMAGE=POSTGRES_IMAGE,
        OPENLFR_MOSQUITTO_IMAGE=MOSQUITTO_IMAGE,
        OPENLFR_SECRETS=str(secrets_dir),
        OPENLFR_PORT=str(port),
    )
    if SITE_CA.is_file():
        env["SITE_CA"] = str(SITE_CA)
    stack = Stack(f"openlfrsmoke{os.getpid()}", env, port)
    try:
        # podman-compose does not wait for depends_on's service_healthy (docker compose does): the database first
        started = stack.compose("up", "-d", "db", "mosquitto")
        assert started.returncode == 0, started.stdout + started.stderr
        wait_for(
            "PostgreSQL",
            lambda: run(["podman", "healthcheck", "run", stack.container("db")], env, 60).returncode == 0,
        )
        started = stack.compose("up", "-d")
        assert started.returncode == 0, started.stdout + started.stderr
        wait_for("the server", lambda: http_status(f"http://127.0.0.1:{port}/health/live") == 200)
        yield stack
    finally:
        logs = run(["podman", "logs", "--tail", "30", stack.container("serve")], env, 60)
        print(logs.stdout + logs.stderr)  # shown when the test failed
        stack.compose("down", "-v", timeout=300)


def test_the_image_runs_a_scan_inside_beside_postgresql(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    stills = require_data("stills")
    clip = require_data("video", "short_hamilton_clip.mp4")
    serve = stack.container("serve")
    for source, target in ((stills, "/srv/stills"), (clip, "/srv/hamilton.mp4")):
        copied = run(["podman", "cp", str(source), f"{serve}:{target}"], stack.env, 300)
        assert copied.returncode == 0, copied.stderr

    # not root, in the image and in the running containers
    inspected = run(["podman", "image", "inspect", "--format", "{{.Config.User}}", IMAGE], stack.env, 60)
    assert inspected.stdout.strip() == "openlfr:openlfr"
    for service in ("serve", "worker"):
        uid = run(["podman", "exec", stack.container(service), "id", "-u"], stack.env, 60).stdout.strip()
        assert uid.isdigit() and int(uid) != 0, (service, uid)

    if "SITE_CA" in stack.env:  # the site's CA bundle is the containers' system bundle
        inside = run(["podman", "exec", serve, "sha256sum", "/etc/ssl/certs/ca-certificates.crt"], stack.env, 60)
        assert inside.stdout.split()[:1] == [hashlib.sha256(SITE_CA.read_bytes()).hexdigest()]

    first_admin(stack)
    assert "admin" in stack.openlfr("users", "list")
    stack.openlfr("watchlist", "create", "hamilton", "--purpose", "container smoke test")
    stack.openlfr(
        "watchlist", "add", "hamilton", "--person", "lin-manuel-miranda", "--name", "Lin-Manuel Miranda",
        "--category", "other", "--reason", "smoke test", "--legal-basis", "none: test data",
        "--image", "/srv/stills/lin-manuel-miranda.png", "--by", "smoke",
    )  # fmt: skip
    stack.openlfr(
        "watchlist", "import", "hamilton", "/srv/stills/gallery", "--names-from", "folder", "--category", "other",
        "--reason", "filler",
        "--legal-basis", "none: test data", "--face", "largest", "--by", "smoke", "--json",
    )  # fmt: skip
    scan = stack.openlfr("scan", "/srv/hamilton.mp4", "--watchlist", "hamilton", "--json")
    events = [json.loads(line) for line in scan.splitlines() if line.startswith("{")]
    alerts = [event["person"] for event in events if event.get("type") == "alert"]
    assert alerts == ["lin-manuel-miranda"], scan

    # from the host, through the published port; then each service's health check
    assert http_status(f"http://127.0.0.1:{stack.port}/health") == 200
    for service in ("serve", "worker", "mosquitto"):
        checked = run(["podman", "healthcheck", "run", stack.container(service)], stack.env, 120)
        assert checked.returncode == 0, (service, checked.stdout + checked.stderr)
    with capsys.disabled():
        print(f"\ncontainer smoke test: {time.monotonic() - started:.0f} s after the stack was up")
