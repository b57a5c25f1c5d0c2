"""``openlfr worker`` as an operator runs it: the live pipelines of live deployments without the web server.

A deployment of the Hamilton clip is drafted and authorised through the API; the worker (a separate process)
runs it, the alert for Lin-Manuel Miranda lands in the database, and SIGTERM stops the worker cleanly. On
PostgreSQL, ``serve`` and two workers share a 4-camera deployment under camera leases, and a killed worker's
cameras are taken over within the lease plus 2 s with no alert lost or doubled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from openlfr.governance.roles import Role
from tests.conftest import OPENLFR_BIN, require_data
from tests.serverkit import JUSTIFICATION, add_user, build_app, clip_deployment_body, configure, enrol_upload, login
from tests.waitkit import hang_guard, wait_for

pytestmark = [pytest.mark.data, pytest.mark.slow]


def test_the_worker_runs_a_live_deployment_and_stops_on_sigterm(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
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

    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [str(OPENLFR_BIN), "worker"], env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=log.open("w")
    )

    def alerts() -> list[str]:
        with app.state.server.sessions() as db:
            return list(db.scalars(sa.select(Alert.person_ref).where(Alert.deployment_id == deployment["id"])))

    def exited() -> str | None:
        return (
            None if worker.poll() is None else f"the worker exited with {worker.returncode}: {log.read_text()[-2000:]}"
        )

    try:
        wait_for("the worker's alert", lambda: bool(alerts()), 60, every=1.0, gone=exited)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=hang_guard(30))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    stderr = log.read_text()
    assert alerts() == ["LMM-001"], f"worker exit {worker.returncode}; stderr: {stderr[-2000:]}"
    assert worker.returncode == 0, stderr[-2000:]
    with app.state.server.sessions() as db:
        row = db.get(Deployment, deployment["id"])
        assert row is not None and row.faces_seen > 0 and row.frames > 0  # the worker flushed its counts
    app.state.server.store.close()


# ----- serve + two workers on one PostgreSQL: each camera under one lease, a killed worker's taken over -----

LEASE_S = 6.0  # short, so the takeover is quick; renewed every second (lease / 6)
TAKEOVER_BOUND_S = LEASE_S + 2.0  # the bound the README states: the lease, plus the survivors' scheduler tick


def test_serve_and_two_workers_run_four_cameras_once_and_take_over_a_killed_worker(
    monkeypatch: pytest.MonkeyPatch, postgres_url: str, tmp_path: Path
) -> None:
    """A 4-camera deployment of the Hamilton clip (one Lin-Manuel Miranda alert per camera) on ``serve`` and two
    ``openlfr worker`` processes, three machines as far as the leases can tell. Every camera is held by one
    process, which runs one analysis process for it; the worker holding the most cameras is SIGKILLed: each of its
    cameras whose clip had not ended is held by a survivor within the lease plus 2 s, and resumes; in the end
    every camera has exactly one alert."""
    from tests.test_faults_live import (
        PERSON,
        Serve,
        authorise,
        camera_leases,
        prepare_deployment,
        process_tree,
    )

    clip = require_data("video", "short_hamilton_clip.mp4")
    stills = require_data("stills")
    cameras = ("north", "south", "east", "west")
    monkeypatch.setenv("OPENLFR_DATABASE_URL", postgres_url)
    monkeypatch.setenv("OPENLFR_CAMERA_LEASE_SECONDS", str(LEASE_S))
    # One process per camera (the detector in it): four cameras on a shared machine, not eight processes.
    configure(monkeypatch, OPENLFR_STREAM_DETECTOR_PROCESS="false")
    app = build_app()
    deployment_id = prepare_deployment(app, clip, stills, cameras=cameras)
    server = Serve({**os.environ, "OPENLFR_WORKER_NAME": "machine-serve"})
    server.start()
    assert server.process is not None
    logs = [tmp_path / f"worker-{machine}.log" for machine in ("a", "b")]
    workers = [
        subprocess.Popen(
            [str(OPENLFR_BIN), "worker"],
            env={**os.environ, "OPENLFR_WORKER_NAME": f"machine-{log.stem[-1]}"},
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
        )
        for log in logs
    ]
    holders = {server.process.pid: server.process, **{w.pid: w for w in workers}}

    def analysis_processes() -> dict[int, int]:
        """Per holding process (pid): its camera analysis processes."""
        return {pid: list(process_tree(pid).values()).count("openlfr-camera") for pid in holders}

    def held_by_pid() -> dict[int, list[str]]:
        held: dict[int, list[str]] = {pid: [] for pid in holders}
        for camera, (holder, ended) in camera_leases(app, deployment_id).items():
            pid = int(str(holder).split(":")[1]) if holder else 0
            if pid in held and not ended:
                held[pid].append(camera)
        return held

    try:
        # The cameras go to whoever's scheduler is running when the deployment goes live: all three, here.
        wait_for("the workers to run", lambda: all("worker running" in log.read_text() for log in logs), 90, 0.2)
        time.sleep(1.5)
        authorise(app, deployment_id)

        def one_process_per_camera() -> bool:
            leases = camera_leases(app, deployment_id)
            if len(leases) != 4 or not all(holder for holder, _ in leases.values()):
                return False
            return analysis_processes() == {pid: len(c) for pid, c in held_by_pid().items()}

        wait_for("four cameras held, each analysed once", one_process_per_camera, 120, every=0.2)
        time.sleep(1.0)
        assert one_process_per_camera(), (camera_leases(app, deployment_id), analysis_processes())
        held = held_by_pid()
        spread = {pid: len(c) for pid, c in held.items()}
        victim = max(workers, key=lambda w: len(held[w.pid]))
        orphaned = set(held[victim.pid])
        assert orphaned, f"neither worker holds a camera: {held}"
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        survivors = [pid for pid in holders if pid != victim.pid]

        def taken_over() -> bool:
            leases = camera_leases(app, deployment_id)
            return all(
                ended or (holder is not None and int(str(holder).split(":")[1]) in survivors)
                for camera, (holder, ended) in leases.items()
                if camera in orphaned
            )

        taken = wait_for("the killed worker's cameras held by a survivor", taken_over, TAKEOVER_BOUND_S + 30, 0.1)
        wait_for(
            "every camera's clip to end",
            lambda: all(ended for _, ended in camera_leases(app, deployment_id).values()),
            150,
            every=0.5,
        )
        from openlfr.store.alert_models import Alert

        with app.state.server.sessions() as db:
            alerts = db.execute(
                sa.select(Alert.camera, Alert.person_ref).where(Alert.deployment_id == deployment_id)
            ).all()
        per_camera = {camera: sum(1 for c, _ in alerts if c == camera) for camera in cameras}
        print(
            f"cameras per process {spread}; killed {victim.pid} holding {sorted(orphaned)}; taken over "
            f"{taken:.1f} s after SIGKILL (lease {LEASE_S:.0f} s); alerts per camera {per_camera}"
        )
        assert {person for _, person in alerts} == {PERSON}
        assert per_camera == dict.fromkeys(cameras, 1), per_camera  # none lost, none doubled
        assert taken <= TAKEOVER_BOUND_S, f"taken over {taken:.1f} s after the kill (bound {TAKEOVER_BOUND_S:.0f} s)"
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(timeout=hang_guard(30))
                except subprocess.TimeoutExpired:
                    worker.kill()
        server.stop()
        app.state.server.store.close()
