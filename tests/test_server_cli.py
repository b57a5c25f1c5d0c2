"""The server's commands as a user types them: accounts, API tokens, audit verification, retention now."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import OPENLFR_BIN
from tests.serverkit import FAST_HASHING, LiveServer, build_app, configure

PASSWORD = "a-password-long-enough"


def openlfr(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **FAST_HASHING}
    return subprocess.run([str(OPENLFR_BIN), *args], input=stdin, capture_output=True, text=True, env=env, timeout=120)


def test_accounts_tokens_audit_and_retention_from_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    made = openlfr(
        "users", "create", "olly", "--role", "operator", "--name", "Olly Op", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "created operator olly"

    for bad_args, stdin, expected in [
        (["users", "create", "olly", "--role", "operator", "--password-stdin"], PASSWORD, "already exists"),
        (["users", "create", "newbie", "--role", "superuser", "--password-stdin"], PASSWORD, "unknown role"),
        (["users", "create", "shorty", "--role", "auditor", "--password-stdin"], "short", "at least 12"),
        (["users", "create", "Bad Name!", "--role", "auditor", "--password-stdin"], PASSWORD, "user name"),
        (["users", "token", "nobody"], "", "no user named"),
        (["users", "disable", "nobody"], "", "no user named"),
        (["users", "role", "olly", "--role", "boss"], "", "unknown role"),
    ]:
        refused = openlfr(*bad_args, stdin=stdin + "\n")
        assert refused.returncode == 2, (bad_args, refused.stdout, refused.stderr)
        assert expected in refused.stderr and "Traceback" not in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1  # one clear line

    listed = json.loads(openlfr("users", "list", "--json").stdout)
    assert listed == [{"username": "olly", "role": "operator", "active": True, "name": "Olly Op"}]
    token = openlfr("users", "token", "olly", "--days", "1").stdout.strip()
    assert len(token) > 30

    configure(monkeypatch)
    app = build_app()
    with LiveServer(app) as server:
        api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})
        assert api.get("/api/me").json()["username"] == "olly"
        assert api.get("/api/users").status_code == 403  # an operator's token is still an operator's
    app.state.server.store.close()

    # Role, standing and password from the command line; each ends the account's sessions and tokens.
    assert openlfr("users", "role", "olly", "--role", "auditor").stdout.strip() == "olly is now auditor (was operator)"
    assert openlfr("users", "disable", "olly").stdout.startswith("disabled olly")
    no_token = openlfr("users", "token", "olly")
    assert no_token.returncode == 2 and "disabled" in no_token.stderr
    assert openlfr("users", "enable", "olly").stdout.strip() == "enabled olly"
    short = openlfr("users", "password", "olly", "--password-stdin", stdin="short\n")
    assert short.returncode == 2 and "at least 12" in short.stderr
    reset = openlfr("users", "password", "olly", "--password-stdin", stdin="another-long-password\n")
    assert reset.returncode == 0 and reset.stdout.startswith("new password set for olly")
    listed = json.loads(openlfr("users", "list", "--json").stdout)
    assert listed == [{"username": "olly", "role": "auditor", "active": True, "name": "Olly Op"}]

    ran = openlfr("retention", "run")
    assert ran.returncode == 0 and "destroyed 0 watchlist snapshot(s), purged 0 probe image(s)" in ran.stdout
    verified = openlfr("audit", "verify", "--json")
    assert verified.returncode == 0, verified.stdout
    verdict = json.loads(verified.stdout)
    assert verdict["ok"] and verdict["entries"] >= 2  # the account and the token, at least
    key = Path(os.environ["OPENLFR_DATA_DIR"]) / "audit.key"
    assert key.exists() and (key.stat().st_mode & 0o777) == 0o600
