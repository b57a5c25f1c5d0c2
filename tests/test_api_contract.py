"""The API as a contract (issue 23): the OpenAPI document says what every route answers, and tools built on it work.

- in process: every /api operation documents the one error model for each error status; a method a path does not
  take is answered 405 with ``Allow``, ``OPTIONS`` with 204 and the same ``Allow``;
- Schemathesis, all checks, the stateful phase included, against a real ``openlfr serve`` per role (each on a
  fresh data directory: a stateful admin run changes roles and passwords), bounded by ``--max-examples`` and a
  time limit, with a fixed seed printed: zero failures;
- a client generated from /openapi.json by openapi-python-client logs in with a token, lists the watchlists, drafts
  a deployment and reads it back (tests/api_client_smoke.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from openlfr.clock import utc_now
from openlfr.governance.roles import Role
from openlfr.services import accounts
from openlfr.settings import Settings
from openlfr.store.models import Watchlist
from tests.serverkit import PASSWORD, add_user, bearer_token, build_app, configure
from tests.test_upload_limits import Serve, server_store

HERE = Path(__file__).resolve().parent
BIN = HERE.parent / ".venv" / "bin"
SEED = 23  # fixed: a failure is replayed with `schemathesis run ... --seed 23` (printed with the counts)
MAX_EXAMPLES = 5  # per operation and phase: about 1,250 cases per role, the four runs in about two minutes
RUN_LIMIT_S = 420  # the time limit of the four runs together, however busy the machine
ROLES = (Role.ADMIN, Role.AUTHORISER, Role.OPERATOR, Role.AUDITOR)
ERROR_STATUSES = {"400", "401", "403", "404", "409", "413", "422", "429", "503"}


def test_every_operation_documents_the_error_model_and_405_names_the_methods(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    configure(monkeypatch, OPENLFR_DATA_DIR=str(tmp_path))
    app = build_app()
    with TestClient(app, follow_redirects=False) as http:
        add_user(app, "ann", Role.ADMIN)
        admin = {"Authorization": f"Bearer {bearer_token(app, 'ann')}"}
        document = http.get("/openapi.json", headers=admin).json()
        assert "HTTPValidationError" not in json.dumps(document)
        error = document["components"]["schemas"]["ErrorOut"]
        # faces and photo: a photo search refused for want of a chosen face (the console's face picker)
        assert set(error["properties"]) == {"detail", "problems", "faces", "photo"} and error["required"] == ["detail"]
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                documented = set(operation["responses"]) & ERROR_STATUSES
                assert {"400", "401", "413", "422", "429", "503"} <= documented, (method, path)
                for status in documented:
                    schema = operation["responses"][status]["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (method, path, status)
        assert "409" in document["paths"]["/api/deployments/{deployment_id}/authorise"]["post"]["responses"]
        assert "403" in document["paths"]["/api/alerts"]["get"]["responses"]  # not every role sees alerts

        invalid = http.post("/api/watchlists", json={"name": ""}, headers=admin)
        assert invalid.status_code == 422 and set(invalid.json()) == {"detail", "problems"}
        for method, path, allowed in [
            ("TRACE", "/api/alerts/0", "GET, OPTIONS"),
            ("DELETE", "/api/users", "GET, OPTIONS, POST"),  # two routes, one path: both methods named
            ("PUT", "/api/deployments/1/authorise", "OPTIONS, POST"),
        ]:
            refused = http.request(method, path, headers=admin)
            assert (refused.status_code, refused.headers.get("allow")) == (405, allowed), (method, path)
            assert refused.json() == {"detail": "Method Not Allowed"}
            options = http.options(path, headers=admin)
            assert (options.status_code, options.headers.get("allow")) == (204, allowed), path
        assert http.request("TRACE", "/api/users").status_code == 401  # anonymous: who asks comes first


def seed(server: Serve, role: Role) -> str:
    """An account of ``role`` with an API token, and a watchlist to draft against, in the server's store."""
    store = server_store(server)
    try:
        with store.session() as db:
            user = accounts.create_user(db, Settings(), f"st-{role.value}", PASSWORD, role, "test")
            token = accounts.open_session(db, user, "token", timedelta(hours=2))
            db.add(Watchlist(name="wanted", purpose="tests", created_by="test", created_at=utc_now()))
        return token
    finally:
        store.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Role, tuple[Serve, str]]]:
    """One ``openlfr serve`` per role, each on a fresh data directory, started together."""
    started = {role: Serve(tmp_path_factory.mktemp(f"contract-{role.value}")) for role in ROLES}
    try:
        for server in started.values():
            server.start()
        yield {role: (server, seed(server, role)) for role, server in started.items()}
    finally:
        for server in started.values():
            server.stop()


def test_a_generated_client_drafts_and_reads_back_a_deployment(
    servers: dict[Role, tuple[Serve, str]], tmp_path: Path
) -> None:
    server, token = servers[Role.OPERATOR]
    document = tmp_path / "openapi.json"
    answer = httpx.get(f"{server.url}/openapi.json", headers={"Authorization": f"Bearer {token}"}, timeout=60)
    document.write_bytes(answer.raise_for_status().content)
    generate = [str(BIN / "openapi-python-client"), "generate", "--path", str(document), "--meta", "none"]
    generate += ["--config", str(HERE / "openapi-client.yaml"), "--output-path", str(tmp_path / "openlfr_client")]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}  # its ruff post-hooks
    generated = subprocess.run(generate, capture_output=True, text=True, timeout=300, env=env)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert "Warning" not in generated.stdout + generated.stderr, generated.stdout + generated.stderr
    smoke = [sys.executable, str(HERE / "api_client_smoke.py"), str(tmp_path / "openlfr_client"), server.url, token]
    ran = subprocess.run(smoke, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert json.loads(ran.stdout.splitlines()[-1])["status"] == "draft"


@pytest.fixture(scope="module")
def schemathesis_runs(
    servers: dict[Role, tuple[Serve, str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[Role, tuple[subprocess.Popen[bytes], Path]]]:
    """The four runs at once (each on its own server): the machine's cores share them."""
    folder = tmp_path_factory.mktemp("schemathesis")
    runs: dict[Role, tuple[subprocess.Popen[bytes], Path]] = {}
    env = {**os.environ, "NO_COLOR": "1"}
    try:
        for role, (server, token) in servers.items():
            command = [str(BIN / "schemathesis"), "--config-file", str(HERE / "schemathesis.toml"), "run"]
            command += [f"{server.url}/openapi.json", "-H", f"Authorization: Bearer {token}", "--checks", "all"]
            command += ["--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--generation-codec", "ascii"]
            command += ["--phases", "examples,coverage,fuzzing,stateful", "--request-timeout", "60"]
            # The event streams never end by design (tests/test_event_streams.py covers /api/events, and
            # tests/test_console_retrospective.py a search's progress): every request would wait out the timeout.
            command += ["--exclude-path", "/api/events", "--exclude-path", "/api/deployments/{deployment_id}/events"]
            output = folder / f"{role.value}.txt"
            with output.open("wb") as sink:
                # run in the temp folder: Schemathesis keeps its state in ./.schemathesis
                started = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=folder)
                runs[role] = (started, output)
        yield runs
    finally:
        for process, _ in runs.values():
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.slow
@pytest.mark.parametrize("role", ROLES, ids=[role.value for role in ROLES])
def test_schemathesis_finds_nothing(
    schemathesis_runs: dict[Role, tuple[subprocess.Popen[bytes], Path]], role: Role, capsys: pytest.CaptureFixture[str]
) -> None:
    process, output_file = schemathesis_runs[role]
    try:
        process.wait(timeout=RUN_LIMIT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"schemathesis ran past {RUN_LIMIT_S} s for {role.value}: {output_file.read_text()[-3000:]}")
    output = output_file.read_text(errors="replace")
    cases = re.search(r"(\d+) generated", output)
    with capsys.disabled():
        print(f"\nschemathesis as {role.value}: seed {SEED}, {cases[1] if cases else '?'} cases generated")
    assert process.returncode == 0, output[-8000:]
    assert cases and int(cases[1]) > 0, output[-3000:]
    assert "Server error" not in output, output[-8000:]


def test_a_photo_of_a_few_pixels_holds_no_face_rather_than_breaking_the_detector() -> None:
    # Schemathesis's enrolment of 1x1 PNGs was a 500: dlib's CNN detector (the fallback) raises on an image smaller
    # than its filters.
    import numpy as np

    from openlfr.vision.dlib_backend import MmodDetector

    detector = MmodDetector(upsample=1)
    for shape in [(1, 1, 3), (2, 200, 3), (200, 3, 3)]:
        assert detector.detect(np.zeros(shape, np.uint8)) == [], shape
