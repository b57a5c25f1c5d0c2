"""The admin's system page (issue 20, item 8): version, database, data directory, the live cameras and this
server's pipelines with their states, the sinks and their backlog, retention's last run and the audit chain.

One real server runs a live deployment whose camera URL carries a password and a query token (an RTSP address on a
closed loopback port, so its pipeline keeps failing and being restarted) and sends the camera's events to a webhook
sink whose URL path and query and signing secret are secrets too (a closed port: its backlog grows). The page shows
each section with the values the server has, and none of the planted secrets; only admins may see it.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from openlfr import __version__
from openlfr.alerts import outbox
from openlfr.runtime.camera_health import CameraStatus
from openlfr.runtime.supervisor import RunState
from openlfr.services.system_state import database_info
from openlfr.store.db import normalise_url
from openlfr.store.governance_models import AuditEntry
from tests import browserkit
from tests.serverkit import (
    JUSTIFICATION,
    LiveServer,
    add_cast,
    add_watchlist,
    build_app,
    configure,
    draft_body,
    free_port,
    login,
)
from tests.waitkit import wait_for

CAMERA_PASSWORD = "CamPass" + secrets.token_hex(6)
CAMERA_TOKEN = "camtok" + secrets.token_hex(6)
SINK_PATH = "hookpath" + secrets.token_hex(6)
SINK_QUERY = "hookkey" + secrets.token_hex(6)
SINK_SECRET = "hooksecret" + secrets.token_hex(6)
PLANTED = (CAMERA_PASSWORD, CAMERA_TOKEN, SINK_PATH, SINK_QUERY, SINK_SECRET)


def test_the_database_address_is_shown_without_its_password() -> None:
    url = f"postgresql://openlfr:{CAMERA_PASSWORD}@db.example:5433/openlfr?sslpassword={CAMERA_TOKEN}"
    engine = sa.create_engine(normalise_url(url))
    try:
        shown = database_info(engine)
    finally:
        engine.dispose()
    assert shown.kind == "postgresql"
    assert shown.url.startswith("postgresql+psycopg://openlfr:***@db.example:5433/openlfr")
    assert CAMERA_PASSWORD not in repr(shown) and CAMERA_TOKEN not in repr(shown)


@dataclass(frozen=True)
class Served:
    app: FastAPI
    base: str
    deployment: int
    browser: Any


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with pytest.MonkeyPatch.context() as patch:
        data_dir = tmp_path_factory.mktemp("system") / "openlfr-data"
        patch.setenv("OPENLFR_DATA_DIR", str(data_dir))
        patch.delenv("OPENLFR_DATABASE_URL", raising=False)
        hook = f"http://127.0.0.1:{free_port()}/{SINK_PATH}?key={SINK_QUERY}"  # nobody listens: a backlog
        sinks = {"hook": {"type": "webhook", "url": hook, "secret": SINK_SECRET, "events": ["camera", "alert"]}}
        configure(patch, OPENLFR_SINKS=json.dumps(sinks))
        app = build_app(background=True, pipelines=True)
        try:
            add_cast(app, "ann", "olly", "ava", "aud")
            add_watchlist(app)
            camera = f"rtsp://viewer:{CAMERA_PASSWORD}@127.0.0.1:{free_port()}/stream?token={CAMERA_TOKEN}"
            body = draft_body(
                datetime.now(UTC) - timedelta(minutes=1),
                cameras=[{"name": "entrance", "source": camera}],
                sinks=["hook"],
            )
            olly, ava = login(app, "olly"), login(app, "ava")
            drafted = olly.post("/api/deployments", json=body)
            assert drafted.status_code == 201, drafted.text
            deployment = drafted.json()["id"]
            done = ava.post(f"/api/deployments/{deployment}/authorise", json={"justification": JUSTIFICATION})
            assert done.status_code == 200, done.text
            with LiveServer(app) as server, browserkit.chromium() as browser:
                yield Served(app, server.url, deployment, browser)
        finally:
            app.state.server.store.close()


def _backlog(app: FastAPI) -> int:
    with app.state.server.sessions() as db:
        return outbox.sink_health(db, ["hook"])[0].pending


def _settled(served: Served) -> None:
    """Until the camera has a state, the pipeline has run, the sink holds an event and retention has run once."""
    state = served.app.state.server

    def ready() -> bool:
        runs = state.scheduler.status() if state.scheduler is not None else []
        return bool(runs) and _backlog(served.app) > 0 and state.retention is not None and state.retention.last

    wait_for("the camera's pipeline, the sink's backlog and a retention round", ready, 20, every=0.5)


@pytest.mark.slow
def test_the_system_page_shows_each_part_with_the_servers_values(served: Served) -> None:
    _settled(served)
    settings = served.app.state.server.settings
    page = browserkit.new_page(served.browser)
    browserkit.log_in(page, served.base, "ann")
    page.locator("nav a", has_text="System").click()
    page.wait_for_url(f"{served.base}/system")

    assert page.inner_text("[data-testid=version]") == f"OpenLFR {__version__}"
    database = page.inner_text("[data-testid=database]")
    assert database.startswith("sqlite") and str(settings.data_dir / "openlfr.db") in database
    assert page.inner_text("[data-testid=data-dir]").startswith(str(settings.data_dir))
    assert "GiB free of" in page.inner_text("[data-testid=data-dir]")

    camera = page.locator(f"[data-testid=camera-{served.deployment}-entrance]")
    assert camera.locator("[data-state]").get_attribute("data-state") in {s.value for s in CameraStatus}
    assert "viewer:***@127.0.0.1" in camera.inner_text()
    pipeline = page.locator(f"[data-testid=pipeline-{served.deployment}-entrance]")
    assert pipeline.locator("[data-state]").get_attribute("data-state") in {s.value for s in RunState}

    backlog = int(page.inner_text("[data-testid=backlog-hook]").split()[0])
    assert backlog >= 1
    sink = page.inner_text("[data-testid=sink-hook]")
    assert "webhook" in sink and "http://127.0.0.1:" in sink

    round_text = page.inner_text("[data-testid=retention-round]")
    assert re.search(r"last round \d{4}-\d\d-\d\d .* UTC: (nothing was due|destroyed)", round_text), round_text
    assert "every 30 s" in round_text
    assert "the audit log has no retention entry" in page.inner_text("[data-testid=retention-entry]")

    with served.app.state.server.sessions() as db:
        stored = db.scalar(sa.select(sa.func.count()).select_from(AuditEntry))
    shown = int(page.inner_text("[data-testid=audit-entries]").split()[0])
    assert 0 < shown <= stored
    assert page.inner_text("[data-testid=audit-verified]").startswith("never")
    page.click("#verify-audit")
    page.wait_for_selector("[data-testid=audit-verified]:has-text('intact')")
    verified = page.inner_text("[data-testid=audit-verified]")
    assert re.match(r"intact: \d+ entries checked .* by ann$", verified), verified
    with served.app.state.server.sessions() as db:
        checks = db.scalars(sa.select(AuditEntry).where(AuditEntry.action == "audit.verify")).all()
    assert [(c.actor, c.details["ok"]) for c in checks] == [("ann", True)]
    page.context.close()


@pytest.mark.slow
def test_no_planted_secret_appears_on_the_system_page(served: Served) -> None:
    _settled(served)
    ann = login(served.app, "ann")
    html = ann.get("/system").text
    assert "System" in html and "hook" in html
    for planted in PLANTED:
        assert planted not in html, planted
    # The browser's view too: what scripts may have added after the page loaded.
    page = browserkit.new_page(served.browser)
    browserkit.log_in(page, served.base, "ann")
    page.goto(f"{served.base}/system")
    text = page.content()
    assert [planted for planted in PLANTED if planted in text] == []
    page.context.close()


@pytest.mark.slow
def test_only_admins_see_the_system_page(served: Served) -> None:
    for name in ("olly", "ava", "aud"):
        client = login(served.app, name)
        answer = client.get("/system")
        assert answer.status_code == 403, (name, answer.status_code)
        assert 'href="/system"' not in client.get("/records").text
    assert 'href="/system"' in login(served.app, "ann").get("/records").text
    anonymous = TestClient(served.app, follow_redirects=False).get("/system", headers={"accept": "text/html"})
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")


@pytest.mark.slow
def test_the_system_page_reads_well_at_both_widths(served: Served) -> None:
    _settled(served)
    problems: list[str] = []
    for width in browserkit.WIDTHS:
        page = browserkit.new_page(served.browser, width)
        browserkit.log_in(page, served.base, "ann")
        page.goto(f"{served.base}/system")
        problems += browserkit.check_page(page, f"system-admin-{width}")
        page.emulate_media(color_scheme="dark")
        problems += browserkit.check_page(page, f"system-admin-{width}-dark")
        page.context.close()
    assert problems == []
