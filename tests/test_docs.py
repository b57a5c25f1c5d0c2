"""The documentation site (issue 19, item 6): it builds with ``mkdocs build --strict`` (a broken link or anchor
fails), the README stays a newcomer's page, and every command of the getting-started page is one the suite runs:
the ``make`` targets by the tests of what they run, the ``openlfr`` commands here, for real, in a fresh home."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import PROJECT_ROOT
from tests.serverkit import PASSWORD, free_port
from tests.waitkit import wait_for

DOCS = PROJECT_ROOT / "docs"
GETTING_STARTED = DOCS / "getting-started.md"
VENV_BIN = PROJECT_ROOT / ".venv" / "bin"

# What each `make` target of the page runs, and the test that runs the same: (a command its recipe must hold,
# the test file that exercises it, a string that file must hold for it).
MAKE_TARGETS = {
    "demo": ("openlfr demo", "tests/test_demo.py", '"demo"'),
    # `make test` is the suite this test is part of; its recipe must run pytest (which builds this site, below).
    "test": ("pytest", "tests/test_docs.py", "def test_the_site_builds_strict"),
}


def shell_commands(page: Path) -> list[str]:
    """The commands of a page's ``sh`` code blocks, one per line, comments after them dropped."""
    blocks = re.findall(r"^```sh\n(.*?)^```", page.read_text(), re.S | re.M)
    lines = (re.sub(r"\s+#.*$", "", line).strip() for block in blocks for line in block.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def make_recipe(target: str) -> str:
    """The recipe lines of a Makefile target."""
    match = re.search(rf"^{re.escape(target)}:[^\n]*\n((?:\t[^\n]*\n)*)", (PROJECT_ROOT / "Makefile").read_text(), re.M)
    assert match, f"the Makefile has no target {target!r}"
    return match.group(1)


@pytest.mark.slow
def test_the_site_builds_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = subprocess.run(
        [str(VENV_BIN / "mkdocs"), "build", "--strict", "--site-dir", str(site)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (site / "getting-started.html").is_file()
    # the API page's OpenAPI document and route table come from the code at build time
    assert '"openapi"' in (site / "openapi.json").read_text()
    assert "/api/deployments/{deployment_id}/authorise" in (site / "api.html").read_text()


def test_the_readme_is_a_newcomers_page_whose_links_resolve() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 150
    targets = [t for t in re.findall(r"\]\(([^)\s]+)\)", readme) if "://" not in t and not t.startswith("#")]
    assert targets, "the README links the docs"
    missing = [t for t in targets if not (PROJECT_ROOT / t.split("#")[0]).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"


def test_every_page_is_in_the_sites_navigation() -> None:
    nav = (PROJECT_ROOT / "mkdocs.yml").read_text()
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert [p for p in pages if p not in nav] == []


@pytest.fixture
def fresh_home(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a newcomer's shell: a home of its own and no OpenLFR settings, but the installed model
    cache (derived at install time, not data)."""
    from openlfr.settings import Settings

    cache = Settings().cache_dir
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENLFR_", "XDG_"))}
    env |= {"HOME": str(tmp_path / "home"), "OPENLFR_CACHE_DIR": str(cache)}
    (tmp_path / "home").mkdir()
    yield env


@pytest.mark.slow
def test_every_getting_started_command_is_run(fresh_home: dict[str, str]) -> None:
    env = fresh_home
    commands = shell_commands(GETTING_STARTED)
    assert commands[:2] == ["make demo", "make test"], "the page starts with the two commands"
    ran: list[str] = []
    for command in commands:
        words = shlex.split(command)
        if words[0] == "make":
            [target] = words[1:]
            assert target in MAKE_TARGETS, f"{command!r}: no test runs what it runs; add it to MAKE_TARGETS"
            runs, test_file, evidence = MAKE_TARGETS[target]
            assert runs in make_recipe(target), f"make {target} no longer runs {runs!r}"
            assert evidence in (PROJECT_ROOT / test_file).read_text(), f"{test_file} no longer runs {runs!r}"
        elif words[0] == "export":
            name, _, _ = words[1].partition("=")
            value = subprocess.run(
                ["bash", "-c", f'{command} && printf %s "${name}"'], env=env, capture_output=True, text=True, check=True
            ).stdout
            env = {**env, name: value}
            if name == "OPENLFR_DATA_DIR":  # the folder the demo writes its database to, in this home
                assert Path(value) == Path(env["HOME"]) / ".local/share/openlfr/demo"
        elif command == ".venv/bin/openlfr users create officer --role operator":
            # asks for the password twice; without a terminal (a new session) it is read from stdin
            result = subprocess.run(
                command.split(),
                cwd=PROJECT_ROOT,
                env=env,
                input=f"{PASSWORD}\n{PASSWORD}\n",
                capture_output=True,
                text=True,
                start_new_session=True,
                timeout=300,
            )
            assert result.returncode == 0, result.stdout + result.stderr
            assert "created operator officer" in result.stdout
        elif command == ".venv/bin/openlfr serve":
            serve_and_log_in(command, env, "officer")
        else:
            pytest.fail(f"{command!r} is on the getting-started page but no test runs it: add it here")
        ran.append(command)
    assert ran == commands


def serve_and_log_in(command: str, env: dict[str, str], username: str) -> None:
    """``openlfr serve`` as the page says (its port moved off 8400, which another test may hold), until the
    console answers and the account just made logs in; then stopped as Ctrl-C would."""
    port = free_port()
    log = Path(env["HOME"]) / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            command.split(),
            cwd=PROJECT_ROOT,
            env={**env, "OPENLFR_SERVER_PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:

        def answers() -> bool:
            try:
                return httpx.get(f"{base}/health", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        def gone() -> str | None:
            return None if server.poll() is None else f"serve exited {server.returncode}: {log.read_text()}"

        wait_for("the console", answers, idle_s=20, every=0.5, gone=gone)
        assert f"serving {base}" in log.read_text().splitlines()[0]
        with httpx.Client(base_url=base, timeout=60) as http:
            page = http.get("/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert token, page.text
            login = http.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token[1]})
            assert login.status_code == 303, login.text
            assert http.get("/api/me").json()["username"] == username
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def fenced(page: Path, language: str) -> str:
    [block] = re.findall(rf"^```{language}\n(.*?)^```", page.read_text(), re.S | re.M)
    return block


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate and its key, standing in for the example's."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    keys = [str(key), "-out", str(cert)]
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=lfr",
            "-days",
            "1",
            "-keyout",
            *keys,
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_the_nginx_example_is_valid(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("nginx is not installed (Debian package nginx-light; make system-deps installs it as root)")
    cert, key = certificate
    server = fenced(DOCS / "tls.md", "nginx")
    server = server.replace("/etc/ssl/lfr/fullchain.pem", str(cert)).replace("/etc/ssl/lfr/privkey.pem", str(key))
    server = server.replace("listen 443", "listen 127.0.0.1:443").replace("listen 80", "listen 127.0.0.1:80")
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid;\nevents {{}}\nhttp {{\naccess_log off;\n{server}}}\n")
    result = subprocess.run(
        [nginx, "-t", "-q", "-e", str(tmp_path / "error.log"), "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_caddy_example_is_valid(tmp_path: Path) -> None:
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed (Debian package caddy; make system-deps installs it as root)")
    caddyfile = tmp_path / "Caddyfile"
    caddyfile.write_text(fenced(DOCS / "tls.md", "caddyfile"))
    home = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    result = subprocess.run(
        [caddy, "validate", "--adapter", "caddyfile", "--config", str(caddyfile)],
        capture_output=True,
        text=True,
        env={**os.environ, **home},
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("page", ["deploying.md", "sinks.md"])
def test_the_configuration_file_examples_pass_config_check(page: str, tmp_path: Path) -> None:
    example = tmp_path / "openlfr.toml"
    example.write_text(fenced(DOCS / page, "toml"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENLFR_")}
    result = subprocess.run(
        [str(VENV_BIN / "openlfr"), "--config", str(example), "config", "check"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_cameras_file_example_is_read_as_written(tmp_path: Path) -> None:
    from openlfr.cli.scan import cameras_from
    from openlfr.vision.types import Box

    example = tmp_path / "cameras.toml"
    example.write_text(fenced(DOCS / "cameras.md", "toml"))
    entrance, concourse = cameras_from([], example, fps_cap=0.0, min_face=None, roi=None)
    assert (entrance.name, entrance.fps_cap, entrance.roi) == ("entrance", 10.0, None)
    assert entrance.url.startswith("rtsp://") and concourse.url.startswith("rtsp://")
    assert (concourse.name, concourse.roi, concourse.min_face_px) == ("concourse", Box(0, 200, 1920, 1080), 40)
