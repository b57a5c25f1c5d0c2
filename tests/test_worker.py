"""``openlfr worker`` as an operator runs it: the live pipelines of live deployments without the web server.

A deployment of the Hamilton clip is drafted and authorised through the API; the worker (a separate process)
runs it, the alert for Lin-Manuel Miranda lands in the database, and SIGTERM stops the worker cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
import sqlalchemy as sa

from openlfr.governance.roles import Role
from tests.conftest import OPENLFR_BIN, require_data
from tests.serverkit import JUSTIFICATION, add_user, build_app, clip_deployment_body, configure, enrol_upload, login

pytestmark = [pytest.mark.data, pytest.mark.slow]


def test_the_worker_runs_a_live_deployment_and_stops_on_sigterm(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("openlfr.stream.pipeline", reason="live pipeline (issue 4) not installed")
    clip = require_data("video", "short_hamilton_clip.mp4")
    stills = require_data("stills")
    configure(monkeypatch)
    app = build_app()  # no pipelines here: the worker runs them
    for name, role in [("ann", Role.ADMIN), ("olly", Role.OPERATOR), ("ava", Role.AUTHORISER)]:
        add_user(app, name, role)
    ann, olly, ava = login(app, "ann"), login(app, "olly"), login(app, "ava")
    assert ann.post("/api/watchlists", json={"name": "hamilton", "purpose": "worker test"}).status_code == 201
    enrol_upload(ann, "hamilton", "LMM-001", "Lin-Manuel Miranda", [stills / "lin-manuel-miranda.png"])
    body = clip_deployment_body(clip, "hamilton")
    deployment = olly.post("/api/deployments", json=body).json()
    authorised = ava.post(f"/api/deployments/{deployment['id']}/authorise", json={"justification": JUSTIFICATION})
    assert authorised.status_code == 200, authorised.text

    from openlfr.store.alert_models import Alert
    from openlfr.store.governance_models import Deployment

    worker = subprocess.Popen(
        [str(OPENLFR_BIN), "worker"], env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    alerts: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not alerts and worker.poll() is None:
            time.sleep(1.0)
            with app.state.server.sessions() as db:
                alerts = list(db.scalars(sa.select(Alert.person_ref).where(Alert.deployment_id == deployment["id"])))
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            _, stderr = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            _, stderr = worker.communicate()
    assert alerts == ["LMM-001"], f"worker exit {worker.returncode}; stderr: {stderr[-2000:]}"
    assert worker.returncode == 0, stderr[-2000:]
    with app.state.server.sessions() as db:
        row = db.get(Deployment, deployment["id"])
        assert row is not None and row.faces_seen > 0 and row.frames > 0  # the worker flushed its counts
    app.state.server.store.close()
