"""Delivery across failures, on SQLite and PostgreSQL: the receiver refuses (503) while ``openlfr serve`` is
SIGKILLed and started again; once it answers 200, every alert is delivered exactly once by ``Idempotency-Key``, in
commit order per deployment, with no key sent by two processes at once (on PostgreSQL by ``serve`` and two
``openlfr worker`` processes together).

The receiver answers 503 for ``REFUSAL_SECONDS`` (60, as the issue asks) from its first refusal, and at least until
the kill and the restart have happened and three attempts were refused after each (so a slow machine cannot end
the refusal before the restart it is meant to span)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import httpx
import pytest

from openlfr.alerts.database import AlertDatabase
from openlfr.governance.roles import Role
from tests.conftest import OPENLFR_BIN
from tests.serverkit import (
    JUSTIFICATION,
    add_user,
    add_watchlist,
    bearer_token,
    build_app,
    configure,
    draft_body,
    free_port,
    login,
)
from tests.sinkkit import SECRET, SigningReceiver, found
from tests.waitkit import hang_guard, wait_for

pytestmark = pytest.mark.slow

REFUSAL_SECONDS = 60.0  # how long the receiver answers 503, from its first refusal


class Processes:
    """``openlfr`` processes of this test, their stderr in files, stopped at the end whatever happens."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.running: list[tuple[subprocess.Popen[bytes], Path, IO[str]]] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = self.folder / f"{args[0]}-{len(self.running)}.log"
        out = log.open("w")
        process = subprocess.Popen([str(OPENLFR_BIN), *args], env=dict(os.environ), stdout=out, stderr=out)
        self.running.append((process, log, out))
        return process

    def gone(self) -> str | None:
        for process, log, _ in self.running:
            if process.poll() not in (None, -signal.SIGKILL):
                return f"{log.name} exited with {process.returncode}: {log.read_text()[-1500:]}"
        return None

    def stop(self) -> None:
        for process, _, out in self.running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=hang_guard(20))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            out.close()


def test_a_refusing_receiver_and_a_killed_server_lose_and_double_nothing(
    monkeypatch: pytest.MonkeyPatch, store_url: str, tmp_path: Path
) -> None:
    receiver = SigningReceiver(refusing=True)
    secret = tmp_path / "hook.secret"
    secret.write_text(SECRET)
    sinks = {"hook": {"type": "webhook", "url": receiver.url, "secret_file": str(secret), "events": ["alert"]}}
    configure(monkeypatch, OPENLFR_SINKS=json.dumps(sinks), OPENLFR_DELIVERY_RETRY_MAX_SECONDS="0.5")
    app = build_app()
    processes = Processes(tmp_path)
    try:
        for name, role in [("ann", Role.ADMIN), ("olly", Role.OPERATOR), ("ava", Role.AUTHORISER)]:
            add_user(app, name, role)
        add_watchlist(app)
        olly, ava = login(app, "olly"), login(app, "ava")
        deployments = []
        for _ in range(2):  # commit order is kept per deployment
            body = draft_body(datetime.now(UTC) - timedelta(seconds=5), sinks=["hook"])
            drafted = olly.post("/api/deployments", json=body).json()
            answer = ava.post(f"/api/deployments/{drafted['id']}/authorise", json={"justification": JUSTIFICATION})
            assert answer.status_code == 200, answer.text
            deployments.append(drafted["id"])
        database = AlertDatabase(app.state.server.store)
        keys: dict[int, list[str]] = {deployment: [] for deployment in deployments}

        def commit(tracks: range) -> None:
            for track in tracks:
                for deployment in deployments:
                    record, new = database.write(
                        found(f"P00{track % 3}", track), watchlist_name="wanted", names={}, deployment_id=deployment
                    )
                    assert new
                    keys[deployment].append(record.uid)

        commit(range(1, 4))
        port = str(free_port())
        serve = processes.start("serve", "--host", "127.0.0.1", "--port", port, "--no-pipelines")
        wait_for("refused attempts", lambda: receiver.refused >= 3, 60, gone=processes.gone)
        serve.send_signal(signal.SIGKILL)  # mid-retry, leases held, nothing told
        serve.wait(timeout=30)
        commit(range(4, 6))  # committed while no sender runs at all
        refused = receiver.refused
        processes.start("serve", "--host", "127.0.0.1", "--port", port, "--no-pipelines")
        if store_url.startswith("postgresql"):
            for _ in range(2):
                processes.start("worker")
        wait_for("refused attempts after the restart", lambda: receiver.refused >= refused + 3, 60, gone=processes.gone)
        # A sink that keeps failing is shown: the console, /health's detail, /metrics.
        page = login(app, "ann").get("/settings").text
        assert 'data-testid="sink-hook"' in page and "failing since" in page and "HTTP 503" in page
        bearer = {"Authorization": f"Bearer {bearer_token(app, 'ann')}"}
        health = httpx.get(f"http://127.0.0.1:{port}/health", headers=bearer, timeout=30).json()
        (shown,) = [sink for sink in health["sinks"] if sink["sink"] == "hook"]
        assert shown["pending"] >= 1 and shown["type"] == "webhook"
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", headers=bearer, timeout=30).text
        assert 'openlfr_deliveries_pending{sink="hook"}' in metrics
        assert 'openlfr_delivery_failures_total{sink="hook"}' in metrics
        # The 503s last 60 s from the first, spanning the kill and the restart (a scenario, not a time budget).
        assert receiver.first_refused_at is not None
        time.sleep(max(0.0, receiver.first_refused_at + REFUSAL_SECONDS - time.monotonic()))
        receiver.refusing = False
        everything = {key for listed in keys.values() for key in listed}
        wait_for("every alert delivered", lambda: set(receiver.accepted) >= everything, 60, gone=processes.gone)
        time.sleep(2.0)  # anything sent twice would arrive meanwhile
    finally:
        processes.stop()
        receiver.close()
        app.state.server.store.close()
    assert sorted(receiver.accepted) == sorted(everything), "each alert accepted exactly once"
    assert receiver.conflicts == 0 and receiver.overlaps == 0 and receiver.unsigned == 0
    for deployment, listed in keys.items():
        assert [key for key in receiver.accepted if key in listed] == listed, f"commit order of {deployment}"
