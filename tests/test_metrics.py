"""Prometheus metrics: scraped during a real scan of the Hamilton clip, and the server's /metrics for admins only.

The scan runs as `openlfr scan --metrics-port`, so the counters come from the camera process's reports to the
scan's own process, as in production. The scraped text is checked for every person id, name and reference id
the watchlist and the alerts hold: none may appear.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import make_url, text

from openlfr.governance.roles import Role
from openlfr.services.metrics import PipelineMetrics
from openlfr.store.db import Store, StoreError, make_engine
from openlfr.stream.runner import CameraState
from openlfr.stream.source import CameraConfig
from tests.conftest import require_data
from tests.serverkit import LiveServer, add_user, build_app, configure
from tests.streamkit import HERE, free_port, openlfr_env
from tests.test_scan_cli import enrol, gallery_people

CAMERA = "short_hamilton_clip"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape by (name, sorted labels); parsing it proves the text format is valid."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def promtool_check(text: str) -> None:
    """``promtool check metrics`` (Debian's prometheus package) on a scrape: it parses as Prometheus reads it, and
    its names, types and help follow Prometheus's conventions."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; make system-deps installs it as root)")
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout + checked.stderr


def camera_value(scrape: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    """The value of a per-camera sample of the scan's camera (its deployment is the scan's own, number 1)."""
    return scrape.get((name, (("camera", CAMERA), ("deployment_id", "1"))), 0.0)


@pytest.mark.data
@pytest.mark.slow
def test_scan_metrics_move_and_name_nobody(tmp_path: Path) -> None:
    clip = require_data("video", "short_hamilton_clip.mp4")
    stills = require_data("stills")
    # Two fillers (angelina_jolie's photo shows three faces: the enrolment gate refuses it) and the listed performer.
    people = {
        name: photos[:1] for name, photos in gallery_people(stills).items() if name in ("kate_siegel", "kit_harington")
    }
    people["lin-manuel-miranda"] = [stills / "lin-manuel-miranda.png"]
    data_dir = tmp_path / "data"
    enrol(data_dir, "hamilton", people, tmp_path)

    port = free_port()
    command = [str(HERE.parent / ".venv" / "bin" / "openlfr"), "scan", str(clip), "--watchlist", "hamilton"]
    command += ["--json", "--realtime", "--metrics-port", str(port)]
    scan = subprocess.Popen(command, env=openlfr_env(data_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    texts: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while scan.poll() is None and time.monotonic() < deadline:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
            except httpx.HTTPError:
                answer = None  # not listening yet, or already gone
            if answer is not None and answer.status_code == 200:
                texts.append(answer.text)
            time.sleep(0.25)
        stdout, stderr = scan.communicate(timeout=60)
    finally:
        if scan.poll() is None:
            scan.kill()
            scan.communicate()
    assert scan.returncode == 0, stderr.decode()
    scrapes = [samples(text) for text in texts]
    frames = [camera_value(s, "openlfr_camera_frames_decoded_total") for s in scrapes]
    moving = [f for f in frames if f > 0]
    assert len(set(moving)) >= 2 and moving == sorted(moving), f"frames decoded per scrape: {frames}"
    promtool_check(texts[frames.index(moving[0])])  # a scrape taken while the scan decodes frames
    last = scrapes[-1]
    assert camera_value(last, "openlfr_camera_frames_processed_total") > 0
    assert camera_value(last, "openlfr_camera_faces_seen_total") > 0
    assert camera_value(last, "openlfr_camera_embeddings_total") > 0
    assert camera_value(last, "openlfr_camera_alerts_total") >= 1, "the alert for Lin-Manuel Miranda"
    assert camera_value(last, "openlfr_frame_latency_seconds_count") > 0
    assert camera_value(last, "openlfr_alert_latency_seconds_count") == camera_value(
        last, "openlfr_camera_alerts_total"
    )
    states = {labels for name, labels in last if name == "openlfr_deployment_state"}
    assert states & {(("deployment_id", "1"), ("state", s)) for s in ("running", "finished")}, states
    assert '"type": "summary"' in stdout.decode()

    database = sqlite3.connect(data_dir / "openlfr.db")
    identities = {
        str(v) for row in database.execute("SELECT reference_id, display_name FROM watchlist_people") for v in row
    }
    identities |= {str(r[0]) for r in database.execute("SELECT person_ref FROM alerts")}
    assert "lin-manuel-miranda" in identities and len(identities) >= 3
    words = {part for identity in identities for part in identity.replace("_", "-").replace(" ", "-").split("-")}
    scraped = "\n".join(texts).lower()
    for identity in identities | {w for w in words if len(w) >= 4}:
        assert identity.lower() not in scraped, f"{identity!r} appears in the metrics"


def test_server_metrics_only_for_admins(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch)
    app = build_app()
    add_user(app, "metrics-admin", Role.ADMIN)
    add_user(app, "metrics-operator", Role.OPERATOR)
    from openlfr.services import accounts
    from openlfr.store.governance_models import User

    tokens = {}
    with app.state.server.sessions() as db:
        for name in ("metrics-admin", "metrics-operator"):
            user = db.query(User).filter_by(username=name).one()
            tokens[name] = accounts.open_session(db, user, "token", timedelta(hours=1))
        db.commit()
    with LiveServer(app) as server:
        client = httpx.Client(base_url=server.url, timeout=10, follow_redirects=False)
        assert client.get("/metrics").status_code in (401, 303)
        assert client.get("/metrics", headers={"Authorization": "Bearer not-a-token"}).status_code in (401, 303)
        operator = {"Authorization": f"Bearer {tokens['metrics-operator']}"}
        assert client.get("/metrics", headers=operator).status_code == 403
        assert client.get("/api/deployments/424242", headers=operator).status_code == 404
        answer = client.get("/metrics", headers={"Authorization": f"Bearer {tokens['metrics-admin']}"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    scrape = samples(answer.text)
    route = (("method", "GET"), ("route", "/api/deployments/{deployment_id}"), ("status", "404"))
    assert scrape[("openlfr_http_request_duration_seconds_count", route)] >= 1
    assert "424242" not in answer.text, "a path's id in a label"
    promtool_check(answer.text)


def scrape_of(metrics: PipelineMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(metrics)
    return samples(generate_latest(registry).decode())


def test_counters_keep_rising_across_pipeline_restarts() -> None:
    metrics = PipelineMetrics()
    key = (("camera", "gate"), ("deployment_id", "7"))
    first = CameraState(CameraConfig("gate", "gate.mp4"))
    first.capture_counters.decoded, first.worker_counters.faces_seen = 10, 3
    first.latency.add(12.0)
    metrics.observe(7, {"gate": first})
    first.capture_counters.decoded = 15
    first.latency.add(700.0)
    metrics.observe(7, {"gate": first})
    metrics.observe(7, {"gate": first})  # the same report twice adds nothing
    restarted = CameraState(CameraConfig("gate", "gate.mp4"))  # a new pipeline run counts from zero again
    restarted.capture_counters.decoded = 4
    restarted.latency.add(3.0)
    metrics.observe(7, {"gate": restarted})
    scrape = scrape_of(metrics)
    assert scrape[("openlfr_camera_frames_decoded_total", key)] == 19
    assert scrape[("openlfr_camera_faces_seen_total", key)] == 3
    assert scrape[("openlfr_frame_latency_seconds_count", key)] == 3
    assert scrape[("openlfr_frame_latency_seconds_bucket", (*key, ("le", "0.025")))] == 2
    assert abs(scrape[("openlfr_frame_latency_seconds_sum", key)] - 0.715) < 1e-9


def test_database_errors_are_counted_once_per_engine(tmp_path: Path) -> None:
    store = Store(make_engine(make_url(f"sqlite:///{tmp_path / 'metrics.db'}")))
    metrics = PipelineMetrics()
    metrics.watch_store(store)
    metrics.watch_store(store)  # asked again (every pipeline asks): still one listener
    with pytest.raises(StoreError), store.session() as db:
        db.execute(text("SELECT * FROM no_such_table"))
    assert scrape_of(metrics)[("openlfr_database_errors_total", (("error", "OperationalError"),))] == 1
    store.close()
