"""Retrospective searches (RFR, issue 12 item 2).

1. The Hamilton clip searched retrospectively by the real server and pipeline: drafted by an authoriser, whose own
   authorisation is refused, authorised by another, read as fast as the machine allows (every frame), exactly one
   alert (Lin-Manuel Miranda), adjudicated in the console in a real browser, a record line of kind
   ``retrospective``. The processing's wall time and the clip's length go to test-artifacts/rfr-timings.json.
2. An urgent search runs before its authorisation; nobody authorises it within the time allowed (a tiny
   ``OPENLFR_RFR_AUTHORISE_WITHIN_HOURS``): the sweep destroys its alerts (gone from the database file too), its
   snapshot, cancels it and audits the refusal as ``system``; authorising it afterwards is refused. One authorised
   in time keeps its alert.
3. Sources outside the admin's directories, streams, and urgency for a live deployment are refused.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from openlfr.governance.roles import Role
from tests.conftest import PROJECT_ROOT, require_data
from tests.serverkit import (
    JUSTIFICATION,
    LiveServer,
    add_alert,
    add_cast,
    add_user,
    add_watchlist,
    build_app,
    clip_deployment_body,
    configure,
    draft_body,
    enrol_upload,
    login,
)
from tests.test_console_browser import CHROMIUM, CHROMIUM_ARGS, log_in, new_page

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
URGENT = "A child is missing and this footage is the last sighting; waiting for an authoriser would cost hours."


def _audit(app: Any, action: str) -> list[Any]:
    from openlfr.store.governance_models import AuditEntry

    with app.state.server.sessions() as db:
        return list(db.scalars(sa.select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)))


def _record_line(client: Any, deployment_id: int) -> dict[str, str]:
    today = datetime.now(UTC).date()
    answer = client.get(f"/api/records.csv?since={today - timedelta(days=1)}&until={today + timedelta(days=1)}")
    assert answer.status_code == 200, answer.text
    rows = [row for row in csv.DictReader(io.StringIO(answer.text)) if row["deployment_id"] == str(deployment_id)]
    assert len(rows) == 1, answer.text
    return rows[0]


def _retrospective(clip: Path, watchlist: str, **extra: Any) -> dict[str, Any]:
    return {**clip_deployment_body(clip, watchlist), "name": "Hamilton footage", "kind": "retrospective", **extra}


@pytest.mark.data
@pytest.mark.slow
def test_hamilton_clip_searched_retrospectively_and_adjudicated_in_the_console(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.skip(f"no browser at {CHROMIUM} (Debian package chromium; `make system-deps` as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    clip = require_data("video", "short_hamilton_clip.mp4")
    stills = require_data("stills")
    configure(monkeypatch, OPENLFR_RFR_SOURCE_DIRS=str(clip.parent), OPENLFR_RETENTION_INTERVAL_SECONDS="5")
    app = build_app(background=True, pipelines=True)
    add_cast(app, "ann", "olly", "omar", "ava", "abe")
    ARTIFACTS.mkdir(exist_ok=True)

    with LiveServer(app) as server:
        ann = login(app, "ann")
        assert ann.post("/api/watchlists", json={"name": "hamilton", "purpose": "rfr test"}).status_code == 201
        enrol_upload(ann, "hamilton", "LMM-001", "Lin-Manuel Miranda", [stills / "lin-manuel-miranda.png"])
        for folder in sorted((stills / "gallery").iterdir()):  # fillers; Alex Lacamoire (in the clip) is not listed
            if folder.name != "alex_lacamoire":
                name = folder.name.replace("_", " ").title()
                enrol_upload(ann, "hamilton", folder.name, name, sorted(folder.iterdir()), "other")

        ava, abe = login(app, "ava"), login(app, "abe")
        drafted = ava.post("/api/deployments", json=_retrospective(clip, "hamilton"))
        assert drafted.status_code == 201, drafted.text
        deployment = drafted.json()
        assert deployment["kind"] == "retrospective" and deployment["phase"] == "draft"
        assert 9.0 < deployment["media_seconds"] < 10.1  # the clip's video stream: 275 frames at 29.97 fps
        assert not deployment["may_match"]  # not urgent: it waits for its authorisation
        mine = ava.post(f"/api/deployments/{deployment['id']}/authorise", json={"justification": JUSTIFICATION})
        assert mine.status_code == 409 and "author" in mine.json()["detail"]
        authorised = abe.post(f"/api/deployments/{deployment['id']}/authorise", json={"justification": JUSTIFICATION})
        assert authorised.status_code == 200, authorised.text

        progress: list[float] = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            state = ava.get(f"/api/deployments/{deployment['id']}").json()
            if state["progress"] is not None:
                progress.append(state["progress"])
            if state["processing_finished_at"]:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"the search did not finish: {state}")
        assert state["status"] == "ended"  # nothing more to do: its snapshot goes under the retention rule
        assert state["progress"] == 1.0 and state["frames"] > 0
        processed = _audit(app, "deployment.processed")
        assert len(processed) == 1 and processed[0].actor == "system"
        [began] = _audit(app, "deployment.processing_started")
        assert began.actor == "system" and "before_authorisation" not in began.details  # it was authorised first
        started = datetime.fromisoformat(state["processing_started_at"])
        finished = datetime.fromisoformat(state["processing_finished_at"])
        timings = {
            "clip_seconds": state["media_seconds"],
            "frames": state["frames"],
            "wall_seconds_from_start_to_finish": round((finished - started).total_seconds(), 2),
            "analysis_seconds_first_to_last_frame": processed[0].details["analysis_seconds"],
            "progress_seen": sorted(set(progress)),
        }
        (ARTIFACTS / "rfr-timings.json").write_text(json.dumps(timings, indent=1))
        print("retrospective search timings:", timings)

        olly = login(app, "olly")
        alerts = olly.get(f"/api/alerts?deployment={deployment['id']}").json()
        assert [a["person_name"] for a in alerts] == ["Lin-Manuel Miranda"], alerts
        assert olly.get("/api/alerts").json()[0]["alert_id"] == alerts[0]["alert_id"]  # the one review queue

        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                pages = {}
                for username in ("olly", "omar"):
                    pages[username] = log_in(new_page(browser, 1400), server.url, username)
                operator = pages["olly"]
                row = operator.locator(".alert-row", has_text="Lin-Manuel Miranda").first
                row.wait_for(timeout=20_000)
                row.click()
                operator.click("button.decision-confirmed")
                operator.wait_for_selector("[data-testid=stage]:has-text('awaiting verification')")
                second = pages["omar"]
                second.goto(operator.url)
                second.click("button:has-text('Verify')")
                second.wait_for_selector("[data-testid=verified]")
                operator.reload()
                operator.click("button:has-text('Engaged and arrested')")
                operator.wait_for_selector("[data-testid=outcome]:has-text('Engaged and arrested')")

                operator.goto(f"{server.url}/deployments/{deployment['id']}")
                assert "retrospective" in operator.locator("[data-testid=kind]").inner_text()
                assert "(100%)" in operator.locator("[data-testid=progress]").inner_text()
                assert operator.locator("[data-testid=confirmed]").inner_text() == "1"
                assert operator.locator("[data-testid=arrested]").inner_text() == "1"
                operator.screenshot(path=str(ARTIFACTS / "rfr-deployment-record.png"), full_page=True)
                operator.goto(f"{server.url}/records")
                published = operator.locator("tr", has_text="Hamilton footage")
                assert published.locator("[data-testid=kind]").inner_text() == "retrospective"
            finally:
                browser.close()

        line = _record_line(olly, deployment["id"])
        assert line["kind"] == "retrospective"
        assert (line["alerts"], line["confirmed"], line["arrested"]) == ("1", "1", "1")
    app.state.server.store.close()


def _urgent_app(monkeypatch: pytest.MonkeyPatch, clip: Path, within_hours: float) -> Any:
    configure(
        monkeypatch,
        OPENLFR_RFR_SOURCE_DIRS=str(clip.parent),
        OPENLFR_RFR_AUTHORISE_WITHIN_HOURS=str(within_hours),
    )
    app = build_app()
    for name, role in [("olly", Role.OPERATOR), ("ava", Role.AUTHORISER), ("abe", Role.AUTHORISER)]:
        add_user(app, name, role)
    add_watchlist(app)
    return app


@pytest.mark.data
def test_urgent_search_not_authorised_in_time_loses_its_alerts(monkeypatch: pytest.MonkeyPatch, store_url: str) -> None:
    """On SQLite and on PostgreSQL (``store_url``)."""
    from openlfr.services.retention import enforce_once
    from openlfr.store.alert_models import Alert
    from openlfr.store.governance_models import AlertReview, SnapshotImage

    clip = require_data("video", "short_hamilton_clip.mp4")
    app = _urgent_app(monkeypatch, clip, within_hours=2.0 / 3600)  # two seconds to authorise it
    olly, ava = login(app, "olly"), login(app, "ava")
    body = _retrospective(clip, "wanted", threshold=0.6, target_fpir=None, urgent_reason=URGENT)
    drafted = olly.post("/api/deployments", json=body)
    assert drafted.status_code == 201, drafted.text
    urgent = drafted.json()
    # It may match now, before anyone authorised it, and says so.
    assert urgent["phase"] == "urgent" and urgent["may_match"], urgent
    assert "BEFORE authorisation" in urgent["may_match_reason"] and urgent["watchlist_size"] > 0
    draft_audit = _audit(app, "deployment.draft")[-1]
    assert draft_audit.details["runs_before_authorisation"] is True
    assert datetime.fromisoformat(draft_audit.details["authorise_by"]) == datetime.fromisoformat(urgent["urgent_until"])
    page = olly.get(f"/deployments/{urgent['id']}")
    assert "runs BEFORE anyone has authorised it" in page.text

    add_alert(app, urgent["id"], "P001")  # what its pipeline committed
    time.sleep(max(0.0, (datetime.fromisoformat(urgent["urgent_until"]) - datetime.now(UTC)).total_seconds()) + 0.2)
    assert not olly.get(f"/api/deployments/{urgent['id']}").json()["may_match"]  # the deadline stops it at once

    state = app.state.server
    enforce_once(state.store, state.settings)  # one round of the retention sweep
    with state.sessions() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(Alert).where(Alert.deployment_id == urgent["id"])) == 0
        reviews = sa.select(sa.func.count()).select_from(AlertReview).where(AlertReview.deployment_id == urgent["id"])
        assert db.scalar(reviews) == 0
        images = (
            sa.select(sa.func.count()).select_from(SnapshotImage).where(SnapshotImage.deployment_id == urgent["id"])
        )
        assert db.scalar(images) == 0
    state.store.close()  # the scrub has run; nothing of the probe is left in the file
    if store_url.startswith("sqlite"):
        database_file = Path(store_url.removeprefix("sqlite:///"))
        for path in (database_file, database_file.with_name(database_file.name + "-wal")):
            assert not path.exists() or b"\xff\xd8\xff\xe0probe" not in path.read_bytes(), path
    app = build_app()
    olly, ava = login(app, "olly"), login(app, "ava")
    lapsed = olly.get(f"/api/deployments/{urgent['id']}").json()
    assert lapsed["status"] == "cancelled" and lapsed["authorisation_lapsed_at"] and lapsed["snapshot_destroyed_at"]
    [entry] = _audit(app, "deployment.authorisation_lapsed")
    assert entry.actor == "system" and entry.target == f"deployment:{urgent['id']}"
    assert entry.details["alerts_destroyed"] == 1
    late = ava.post(f"/api/deployments/{urgent['id']}/authorise", json={"justification": JUSTIFICATION})
    assert late.status_code == 409, late.text
    assert _record_line(olly, urgent["id"])["kind"] == "retrospective"
    app.state.server.store.close()


@pytest.mark.data
def test_urgent_search_authorised_in_time_keeps_its_alerts(monkeypatch: pytest.MonkeyPatch) -> None:
    from openlfr.services.retention import enforce_once

    clip = require_data("video", "short_hamilton_clip.mp4")
    app = _urgent_app(monkeypatch, clip, within_hours=48)
    olly, ava = login(app, "olly"), login(app, "ava")
    body = _retrospective(clip, "wanted", threshold=0.6, target_fpir=None, urgent_reason=URGENT)
    urgent = olly.post("/api/deployments", json=body).json()
    assert urgent["urgent_until"] is not None
    hours = (datetime.fromisoformat(urgent["urgent_until"]) - datetime.now(UTC)).total_seconds() / 3600
    assert hours == pytest.approx(48, abs=0.01)
    alert_id = add_alert(app, urgent["id"], "P001")
    authorised = ava.post(f"/api/deployments/{urgent['id']}/authorise", json={"justification": JUSTIFICATION})
    assert authorised.status_code == 200, authorised.text
    assert authorised.json()["may_match"] and authorised.json()["phase"] == "live"
    [entry] = _audit(app, "deployment.authorise")
    assert entry.details["urgent"] is True
    state = app.state.server
    enforce_once(state.store, state.settings)
    assert [a["alert_id"] for a in olly.get(f"/api/alerts?deployment={urgent['id']}").json()] == [alert_id]
    assert not _audit(app, "deployment.authorisation_lapsed")
    state.store.close()


@pytest.mark.data
def test_retrospective_sources_and_urgency_are_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clip = require_data("video", "short_hamilton_clip.mp4")
    app = _urgent_app(monkeypatch, clip, within_hours=48)
    olly = login(app, "olly")
    start = datetime.now(UTC)

    def refused(**extra: Any) -> str:
        answer = olly.post("/api/deployments", json=draft_body(start, **extra))
        assert answer.status_code in (400, 409, 422), answer.text
        return str(answer.json()["detail"])

    elsewhere = tmp_path / "clip.mp4"
    elsewhere.write_bytes(clip.read_bytes()[:1000])
    outside = [{"name": "cam", "source": str(elsewhere)}]
    assert "not a video file retrospective searches may read" in refused(kind="retrospective", cameras=outside)
    stream = [{"name": "cam", "source": "rtsp://10.0.0.5/stream1"}]
    assert "not a video file retrospective searches may read" in refused(kind="retrospective", cameras=stream)
    assert "only a retrospective search can be urgent" in refused(urgent_reason=URGENT)
    inside = [{"name": "cam", "source": str(clip)}]
    assert "cannot wait" in refused(kind="retrospective", cameras=inside, urgent_reason="now")
    live = olly.post("/api/deployments", json=draft_body(start))
    assert live.status_code == 201 and live.json()["kind"] == "live" and live.json()["urgent_until"] is None
    app.state.server.store.close()


def test_urgent_rules_as_pure_functions() -> None:
    """may_match for an urgent draft: only retrospective, only inside its window, only before its deadline; the
    author still cannot authorise it; after the deadline it cannot be authorised and ``lapse`` cancels it."""
    from dataclasses import replace

    from openlfr.governance import deployments
    from openlfr.governance.deployments import Phase, TransitionRefused, may_match, phase
    from tests.test_governance_rules import HOUR, REASON, T0, D

    urgent = D(kind="retrospective", urgent_until=T0 + 48 * HOUR)
    assert phase(urgent, T0 + HOUR) is Phase.URGENT
    assert may_match(urgent, T0 + HOUR) and "BEFORE authorisation" in may_match(urgent, T0 + HOUR).reason
    assert not may_match(urgent, T0 - HOUR)  # its window is not open yet
    assert not may_match(urgent, T0 + 5 * HOUR)  # its window has closed (D's window is four hours)
    assert not may_match(replace(urgent, kind="live"), T0 + HOUR)  # a row edited behind the application's back
    assert not may_match(replace(urgent, snapshot_destroyed_at=T0), T0 + HOUR)
    assert phase(urgent, T0 + 48 * HOUR) is Phase.DRAFT and not may_match(urgent, T0 + 48 * HOUR)
    with pytest.raises(TransitionRefused, match="author"):
        deployments.authorise(urgent, "alice", Role.AUTHORISER, REASON, T0 + HOUR)
    # Authorised after its window closed but before its deadline: what ran is approved.
    assert deployments.authorise(urgent, "bob", Role.AUTHORISER, REASON, T0 + 10 * HOUR)["authorised_by"] == "bob"
    with pytest.raises(TransitionRefused, match="not authorised within"):
        deployments.authorise(urgent, "bob", Role.AUTHORISER, REASON, T0 + 48 * HOUR)
    with pytest.raises(TransitionRefused, match="cancel it instead"):
        deployments.end(urgent, "bob", T0 + HOUR)
    assert deployments.lapse(urgent, T0 + 47 * HOUR, 48) == {}
    lapsed = deployments.lapse(urgent, T0 + 48 * HOUR, 48)
    assert lapsed["status"] == "cancelled" and lapsed["cancelled_by"] == "system"
    assert "48 h" in lapsed["cancel_reason"]
    assert deployments.lapse(replace(urgent, authorised_by="bob"), T0 + 49 * HOUR, 48) == {}


@pytest.mark.data
def test_uploaded_footage_is_searched_then_deleted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Footage uploaded through the API (no directory of the admin's needed) is a retrospective source; refused
    uploads leave nothing; once the search has stopped the retention sweep wipes the file and audits it."""
    from openlfr.services.retention import enforce_once

    clip = require_data("video", "short_hamilton_clip.mp4")
    configure(monkeypatch, OPENLFR_RFR_MAX_UPLOAD_BYTES="3000000")  # no OPENLFR_RFR_SOURCE_DIRS: only uploads
    app = build_app()
    for name, role in [("olly", Role.OPERATOR), ("ava", Role.AUTHORISER), ("aud", Role.AUDITOR)]:
        add_user(app, name, role)
    add_watchlist(app)
    olly, ava = login(app, "olly"), login(app, "ava")
    folder = app.state.server.settings.data_dir / "rfr-footage"

    assert login(app, "aud").request("PUT", "/api/footage?name=x.mp4", content=b"x").status_code == 403
    refused = olly.request("PUT", "/api/footage?name=notes.mp4", content=b"shopping list\n" * 100)
    assert refused.status_code == 400, refused.text
    too_large = olly.request("PUT", "/api/footage?name=big.mp4", content=bytes(3_000_001))
    assert too_large.status_code == 413, too_large.text
    assert not list(folder.iterdir())  # nothing of a refused upload stays
    # Larger than any JSON body may be (1 MB): the footage route has its own limit.
    larger = require_data("video", "pedestrians_1080p.mp4")
    assert olly.request("PUT", "/api/footage?name=p.mp4", content=larger.read_bytes()).status_code == 201
    uploaded = olly.request("PUT", "/api/footage?name=hamilton clip.mp4", content=clip.read_bytes())
    assert uploaded.status_code == 201, uploaded.text
    source = Path(uploaded.json()["source"])
    assert source.parent == folder and source.read_bytes() == clip.read_bytes()
    assert 9.0 < uploaded.json()["seconds"] < 10.1
    assert _audit(app, "footage.upload")[-1].details["sha256"] == uploaded.json()["sha256"]

    body = draft_body(datetime.now(UTC), kind="retrospective", cameras=[{"name": "stage", "source": str(source)}])
    drafted = olly.post("/api/deployments", json=body)
    assert drafted.status_code == 201, drafted.text
    deployment = drafted.json()
    assert ava.post(f"/api/deployments/{deployment['id']}/authorise", json={"justification": JUSTIFICATION}).is_success
    state = app.state.server
    enforce_once(state.store, state.settings)
    assert source.exists()  # its search may run
    cancelled = ava.post(f"/api/deployments/{deployment['id']}/cancel", json={"reason": "footage not needed"})
    assert cancelled.status_code == 200, cancelled.text
    enforce_once(state.store, state.settings)
    assert not source.exists()
    [deleted] = _audit(app, "footage.deleted")
    assert deleted.actor == "system" and deleted.details["searches"] == [deployment["id"]]
    assert len(list(folder.iterdir())) == 1  # the other upload, named by no search, waits rfr_unused_footage_hours
    state.store.close()
