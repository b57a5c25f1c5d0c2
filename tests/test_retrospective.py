"""Retrospective searches (RFR, issue 12 item 2).

1. The Hamilton clip searched retrospectively by the real server and pipeline: drafted by an authoriser, whose own
   authorisation is refused, authorised by another, read as fast as the machine allows (every frame), exactly one
   alert (Lin-Manuel Miranda), adjudicated in the console in a real browser, a record line of kind
   ``retrospective``. The processing's wall time and the clip's length go to test-artifacts/rfr-timings.json.
   Its alert is marked as recorded footage (issue 18 item 6) in the API, the queue, the alert page, the record and
   the sinks' payload, with where in the file it was: within 1 s of the first frame in which the face engine,
   run on its own over the file's frames, finds Lin-Manuel Miranda; and the footage's own start time, from the
   file's metadata. A live alert says "live", with no media time.
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
import subprocess
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


RECORDED_AT = datetime(2016, 3, 14, 19, 2, 7, tzinfo=UTC)  # the footage's own start time, written in its metadata


def _with_recording_time(clip: Path, folder: Path) -> Path:
    """The clip, remuxed (same frames) with a ``creation_time`` in its metadata, as a camera would write it."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("no ffmpeg (Debian package ffmpeg; `make system-deps` as root)")
    copy = folder / "hamilton.mp4"
    stamp = RECORDED_AT.strftime("%Y-%m-%dT%H:%M:%SZ")
    command = ["ffmpeg", "-v", "error", "-y", "-i", str(clip), "-map", "0", "-c", "copy"]
    subprocess.run([*command, "-metadata", f"creation_time={stamp}", str(copy)], check=True, timeout=60)
    return copy


def _first_sighting_s(engine: Any, video: Path, still: Path, threshold: float) -> float:
    """Seconds into ``video`` (presentation time) of the first frame, of every third, in which the face engine alone
    (no tracker, no evidence rule, no alert) finds a face matching ``still`` at ``threshold``: where the person
    appears, measured apart from the pipeline whose alert is checked against it."""
    import av
    import numpy as np
    from PIL import Image

    from openlfr.watchlist.score import match_score

    reference = max(engine.faces(np.asarray(Image.open(still).convert("RGB"))), key=lambda face: face.score)
    with av.open(str(video)) as container:
        for index, frame in enumerate(container.decode(container.streams.video[0])):
            if index % 3 == 0:
                faces = engine.faces(frame.to_ndarray(format="rgb24"))
                scores = [match_score(float(np.dot(f.embedding, reference.embedding)), engine.model_id) for f in faces]
                if scores and max(scores) >= threshold:
                    return float(frame.time)
    raise AssertionError(f"the engine never finds {still.name} in {video.name}")


@pytest.mark.data
@pytest.mark.slow
def test_hamilton_clip_searched_retrospectively_and_adjudicated_in_the_console(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, engine: Any
) -> None:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.skip(f"no browser at {CHROMIUM} (Debian package chromium; `make system-deps` as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    clip = _with_recording_time(require_data("video", "short_hamilton_clip.mp4"), tmp_path)
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
        assert state["coverage"] == 1.0 == processed[0].details["coverage"]  # every frame decoded: all was read
        assert processed[0].details["frames_decoded"] == 275 == state["media_frames"]
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

        # Recorded footage, and where in it: the file, the seconds into it, the moment in the footage.
        [alert] = alerts
        assert (alert["kind"], alert["footage"], alert["media_file"]) == (
            "retrospective",
            "recorded footage",
            clip.name,
        )
        appears = _first_sighting_s(engine, clip, stills / "lin-manuel-miranda.png", state["effective_threshold"])
        print(f"Lin-Manuel Miranda first found at {appears:.2f} s; the alert says {alert['media_time']} s")
        assert abs(alert["media_time"] - appears) <= 1.0, (alert["media_time"], appears)
        assert datetime.fromisoformat(alert["media_started_at"]) == RECORDED_AT
        assert datetime.fromisoformat(alert["media_at"]) == RECORDED_AT + timedelta(seconds=alert["media_time"])
        assert datetime.fromisoformat(alert["alert_at"]) > RECORDED_AT + timedelta(days=365)  # processed, years on
        with app.state.server.sessions() as db:  # what each sink of the deployment is sent
            from openlfr.alerts.outbox import alert_payload
            from openlfr.store.alert_models import Alert

            payload = alert_payload(db, db.get(Alert, alert["alert_id"]))
        assert (payload["kind"], payload["footage"]) == ("retrospective", "recorded footage")
        assert (payload["media_time"], payload["media_file"]) == (alert["media_time"], clip.name)
        assert datetime.fromisoformat(payload["media_at"]) == datetime.fromisoformat(alert["media_at"])

        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                pages = {}
                for username in ("olly", "omar"):
                    pages[username] = log_in(new_page(browser, 1400), server.url, username)
                operator = pages["olly"]
                row = operator.locator(".alert-row", has_text="Lin-Manuel Miranda").first
                row.wait_for(timeout=20_000)
                assert row.locator("[data-testid=footage]").inner_text() == "recorded footage"
                assert f"{clip.name} at {alert['media_time']:.1f} s" in row.inner_text()
                row.click()
                assert "recorded footage" in operator.locator("[data-testid=footage]").inner_text()
                shown = operator.locator("[data-testid=media-time]").inner_text()
                assert f"{clip.name} at {alert['media_time']:.1f} s" in shown and "2016-03-14 19:02:" in shown
                when = operator.locator("[data-testid=when]").inner_text()  # the footage's time first, not "ago"
                assert when.startswith(f"Seen in recorded footage at {alert['media_time']:.1f} s into {clip.name}")
                operator.click("button.decision-confirmed")
                operator.click("dialog[open] [data-confirm-yes]")  # a confirmed match is confirmed twice
                operator.wait_for_selector("[data-testid=stage]:has-text('awaiting verification')")
                second = pages["omar"]
                second.goto(operator.url)
                second.click("button:has-text('Verify')")
                second.wait_for_selector("[data-testid=verified]")
                operator.reload()
                operator.click("button:has-text('Engaged and arrested')")
                operator.click("dialog[open] [data-confirm-yes]")  # so is an outcome
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
                assert published.locator("[data-testid=footage]").inner_text() == "of recorded footage"
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

    # A live camera's alert says "live"; its stored media time (the position in the camera's connection) is no
    # place in any footage: null.
    from openlfr.store.alert_models import Alert

    authorised = login(app, "ava").post(
        f"/api/deployments/{live.json()['id']}/authorise", json={"justification": JUSTIFICATION}
    )
    assert authorised.status_code == 200, authorised.text
    alert_id = add_alert(app, live.json()["id"], "P001")
    with app.state.server.sessions() as db:
        db.execute(sa.update(Alert).where(Alert.id == alert_id).values(media_time_s=12.5))
    alert = olly.get(f"/api/alerts/{alert_id}").json()
    assert (alert["kind"], alert["footage"], alert["media_time"], alert["media_file"]) == ("live", "live", None, None)
    assert '<dd data-testid="footage">live</dd>' in olly.get(f"/alerts/{alert_id}").text
    with app.state.server.sessions() as db:
        from openlfr.alerts.outbox import alert_payload

        payload = alert_payload(db, db.get(Alert, alert_id))
    assert (payload["kind"], payload["footage"]) == ("live", "live")
    assert payload["media_time"] is None and payload["media_at"] is None
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
    reference = uploaded.json()["source"]  # what a draft names; the file's path on the server is never answered
    assert reference.startswith("footage:") and str(folder) not in uploaded.text
    source = folder / reference.removeprefix("footage:")
    assert source.read_bytes() == clip.read_bytes()
    assert 9.0 < uploaded.json()["seconds"] < 10.1
    assert _audit(app, "footage.upload")[-1].details["sha256"] == uploaded.json()["sha256"]

    body = draft_body(datetime.now(UTC), kind="retrospective", cameras=[{"name": "stage", "source": reference}])
    drafted = olly.post("/api/deployments", json=body)
    assert drafted.status_code == 201, drafted.text
    deployment = drafted.json()
    assert deployment["cameras"] == [{"name": "stage", "source": reference}]
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


def _remux_faststart_half(clip: Path, whole: Path, out: Path) -> None:
    """The clip remuxed with its index first (``-movflags +faststart``: ``whole``), then cut to half its bytes
    (``out``): a file that promises all 275 frames and holds about half of them."""
    import av

    with av.open(str(clip)) as source, av.open(str(whole), "w", options={"movflags": "+faststart"}) as remuxed:
        video = source.streams.video[0]
        stream = remuxed.add_stream_from_template(video)
        for packet in source.demux(video):
            if packet.dts is not None:
                packet.stream = stream
                remuxed.mux(packet)
    data = whole.read_bytes()
    out.write_bytes(data[: len(data) // 2])


def _tiny_video(out: Path, codec: str, frames: int = 20) -> None:
    """A small grey video (64x48, 10 fps) made with PyAV."""
    import av
    import numpy as np

    with av.open(str(out), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(frames):
            picture = av.VideoFrame.from_ndarray(np.full((48, 64, 3), index * 10, np.uint8), format="rgb24")
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _lying_mkv(out: Path) -> None:
    """Two seconds of video in a Matroska file whose Duration element claims 1e9 seconds."""
    import struct

    _tiny_video(out, "mpeg4")
    data = bytearray(out.read_bytes())
    at = data.find(b"\x44\x89\x88")  # Segment Info's Duration, an 8-byte float in milliseconds
    assert at > 0
    data[at + 3 : at + 11] = struct.pack(">d", 1e12)
    out.write_bytes(bytes(data))


def _avi_claiming(out: Path, side: int) -> None:
    """A raw AVI of 64x48 frames whose headers (avih, strf) claim ``side`` x ``side`` pixels."""
    import struct

    _tiny_video(out, "rawvideo", frames=5)
    data = bytearray(out.read_bytes())
    main, video = data.find(b"avih"), data.find(b"strf")
    data[main + 40 : main + 48] = struct.pack("<II", side, side)
    data[video + 12 : video + 20] = struct.pack("<ii", side, side)
    out.write_bytes(bytes(data))


def _wait_processed(client: Any, deployment_ids: list[int], seconds: float = 240) -> dict[int, dict[str, Any]]:
    done: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(done) < len(deployment_ids):
        for deployment_id in deployment_ids:
            state = client.get(f"/api/deployments/{deployment_id}").json()
            if state["processing_finished_at"]:
                done[deployment_id] = state
        time.sleep(0.5)
    assert len(done) == len(deployment_ids), f"not processed in {seconds} s: {set(deployment_ids) - set(done)}"
    return done


@pytest.mark.data
@pytest.mark.slow
def test_truncated_or_lying_footage_is_not_reported_as_fully_searched(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Issue 17 item 7: progress and the record come from the frames decoded. The Hamilton clip cut to half its bytes
    (its index first, so it still promises 275 frames and 9.18 s) and an mkv whose header claims 1e9 s are searched
    by the real pipeline: each is processed, and its page, API answer, record and audit entry say how little of
    it could be read (``coverage``), never 1.0 (the whole clip reads 1.0: the first test)."""
    clip = require_data("video", "short_hamilton_clip.mp4")
    footage = tmp_path / "footage"
    footage.mkdir()
    whole, half, lying = tmp_path / "whole.mp4", footage / "half.mp4", footage / "lying.mkv"
    _remux_faststart_half(clip, whole, half)
    _lying_mkv(lying)
    configure(monkeypatch, OPENLFR_RFR_SOURCE_DIRS=str(footage))
    app = build_app(pipelines=True)
    add_cast(app, "olly", "ava", "abe")
    add_watchlist(app)
    with LiveServer(app):
        ava, abe = login(app, "ava"), login(app, "abe")
        ids = []
        for name, path in (("half", half), ("lying", lying)):
            start = datetime.now(UTC) - timedelta(seconds=1)
            body = draft_body(start, kind="retrospective", cameras=[{"name": name, "source": str(path)}])
            drafted = ava.post("/api/deployments", json=body)
            assert drafted.status_code == 201, drafted.text
            ids.append(drafted.json()["id"])
            authorised = abe.post(f"/api/deployments/{ids[-1]}/authorise", json={"justification": JUSTIFICATION})
            assert authorised.status_code == 200, authorised.text
        states = _wait_processed(ava, ids)
        processed = {entry.target: entry.details for entry in _audit(app, "deployment.processed")}
        pages = {deployment_id: ava.get(f"/deployments/{deployment_id}").text for deployment_id in ids}
        lines = {deployment_id: _record_line(ava, deployment_id) for deployment_id in ids}
    app.state.server.store.close()

    half_state, lying_state = (states[deployment_id] for deployment_id in ids)
    print("half clip:", {k: half_state.get(k) for k in ("coverage", "progress", "media_done_seconds", "frames")})
    assert half_state["progress"] < 0.7 and lying_state["progress"] < 0.01  # 1.0 before issue 17
    assert half_state["media_frames"] == 275 and 9.0 < half_state["media_seconds"] < 9.3
    assert 0.3 < half_state["coverage"] < 0.7, half_state
    assert half_state["progress"] == pytest.approx(half_state["coverage"], abs=0.01)
    assert half_state["media_done_seconds"] < 0.7 * half_state["media_seconds"]
    details = processed[f"deployment:{ids[0]}"]
    assert details["coverage"] == half_state["coverage"] and details["frames_expected"] == 275
    assert 0 < details["frames_decoded"] < 200 and details["media_done_seconds"] < 6.5
    assert "incomplete" in pages[ids[0]] and "of 275 frames decoded" in pages[ids[0]]
    assert float(lines[ids[0]]["coverage"]) == half_state["coverage"]

    assert lying_state["media_seconds"] == pytest.approx(1e9)
    assert lying_state["coverage"] == 0.0 and lying_state["progress"] == 0.0
    assert lying_state["media_done_seconds"] < 3
    details = processed[f"deployment:{ids[1]}"]
    assert details["coverage"] == 0.0 and details["frames_decoded"] == 20 and details["media_done_seconds"] < 3
    assert "incomplete" in pages[ids[1]] and float(lines[ids[1]]["coverage"]) == 0.0


def test_undecodable_or_oversized_video_is_refused_at_upload_and_at_draft(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Issue 17 item 10: the first frames are decoded when footage is uploaded, and when a search of a file in an
    allowed directory is drafted; a video that does not decode, or claims more than ``OPENLFR_MAX_UPLOAD_PIXELS``
    (from its header, before a frame of that size is made), is refused and nothing of it stays."""
    footage = tmp_path / "footage"
    footage.mkdir()
    claims_30000, claims_8000, fine = footage / "big.avi", footage / "wide.avi", footage / "fine.avi"
    _avi_claiming(claims_30000, 30000)
    _avi_claiming(claims_8000, 8000)  # 64 M pixels, over the default 24 M
    _tiny_video(fine, "mpeg4", frames=5)
    configure(monkeypatch, OPENLFR_RFR_SOURCE_DIRS=str(footage))
    app = build_app()
    add_cast(app, "olly")
    add_watchlist(app)
    olly = login(app, "olly")
    uploads = app.state.server.settings.data_dir / "rfr-footage"

    undecodable = olly.request("PUT", "/api/footage?name=big.avi", content=claims_30000.read_bytes())
    assert undecodable.status_code == 400 and "can decode" in undecodable.json()["detail"], undecodable.text
    oversized = olly.request("PUT", "/api/footage?name=wide.avi", content=claims_8000.read_bytes())
    assert oversized.status_code == 413 and "8000x8000" in oversized.json()["detail"], oversized.text
    assert not list(uploads.iterdir())  # nothing of a refused upload stays
    accepted = olly.request("PUT", "/api/footage?name=fine.avi", content=fine.read_bytes())
    assert accepted.status_code == 201, accepted.text

    start = datetime.now(UTC)
    for path, words in ((claims_30000, "can decode"), (claims_8000, "8000x8000")):
        body = draft_body(start, kind="retrospective", cameras=[{"name": "cam", "source": str(path)}])
        answer = olly.post("/api/deployments", json=body)
        assert answer.status_code in (400, 409, 413) and words in answer.json()["detail"], answer.text
        assert str(footage) not in answer.text
    drafted = olly.post(
        "/api/deployments", json=draft_body(start, kind="retrospective", cameras=[{"name": "c", "source": str(fine)}])
    )
    assert drafted.status_code == 201 and drafted.json()["media_frames"] == 5, drafted.text
    app.state.server.store.close()


@pytest.mark.slow
def test_a_pipeline_failing_the_same_way_stops_with_a_clear_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17 item 10: a deployment whose camera cannot be read fails the same way at each restart; after
    ``OPENLFR_PIPELINE_MAX_SAME_FAILURES`` failures in a row it is not restarted again (instead of restarting until
    its window ends, /health flapping): its run stays ``failed`` (/health degraded), says why on its page, audited."""
    configure(monkeypatch, OPENLFR_PIPELINE_MAX_SAME_FAILURES="2")
    app = build_app(pipelines=True)
    add_cast(app, "ava", "abe")
    add_watchlist(app)
    with LiveServer(app):
        ava, abe = login(app, "ava"), login(app, "abe")
        body = {**clip_deployment_body(Path("/nonexistent/openlfr-test/camera.mp4"), "wanted"), "threshold": 0.6}
        body.pop("target_fpir")
        drafted = ava.post("/api/deployments", json=body)
        assert drafted.status_code == 201, drafted.text
        deployment_id = drafted.json()["id"]
        authorised = abe.post(f"/api/deployments/{deployment_id}/authorise", json={"justification": JUSTIFICATION})
        assert authorised.status_code == 200, authorised.text
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not _audit(app, "deployment.pipeline_failed"):
            time.sleep(0.5)
        [failed] = _audit(app, "deployment.pipeline_failed")
        time.sleep(3)  # scheduler rounds: the camera is not taken up again
        runs = [run for run in app.state.server.scheduler.report() if run["deployment"] == deployment_id]
        health = ava.get("/health")
        page = ava.get(f"/deployments/{deployment_id}").text
        restarts = _audit(app, "deployment.pipeline_restart")
    app.state.server.store.close()
    assert failed.actor == "system" and failed.details["failures"] == 2 and "no such file" in failed.details["reason"]
    assert len(restarts) == 1  # one restart, then it stopped
    assert [run["state"] for run in runs] == ["failed"] and runs[0]["restarts"] == 1, runs
    assert health.status_code == 503 and health.json()["status"] == "degraded"
    assert "failed the same way 2 times" in page
