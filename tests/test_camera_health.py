"""Camera health (issue 18, item 5): a live deployment's RTSP camera (the test's own GStreamer RTSP server) is
stopped mid-run and started again, under the real server running the real pipeline.

Stopped, the camera goes ``stalled`` or ``reconnecting``; ``/health`` answers 503 ``degraded`` (anonymous: the
status only; logged in: which camera, and why); the API's ``camera_states``, the audit log (actor ``system``),
``/metrics`` (``openlfr_camera_up`` 0) and the event board's typed event say so; the console's queue, open in a
headless Chromium since before the stop, turns the tile red ("no signal since ...") and shows the banner without a
reload, and the deployment page no longer says a green "Matching: allowed". Started again, the camera streams and
``/health`` answers 200. The camera's password appears in none of it.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from openlfr.runtime.camera_health import CameraStateChanged
from openlfr.store.governance_models import AuditEntry
from tests.serverkit import JUSTIFICATION, LiveServer, add_cast, add_watchlist, build_app, configure, draft_body, login
from tests.streamkit import RtspServer, webhook_receiver, write_face_clip
from tests.test_console_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, log_in
from tests.waitkit import wait_for

pytestmark = [pytest.mark.slow]

SECRET = "s3cret-cam-pass"
DOWN = ("stalled", "reconnecting")


def test_a_stopped_rtsp_camera_is_shown_down_everywhere_and_streams_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.skip(f"no browser at {CHROMIUM} (Debian package chromium; `make system-deps` as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    # Two minutes of an empty street: the stream does not end (and reconnect) while the test runs.
    clip = write_face_clip(tmp_path / "street.mp4", np.zeros((8, 8, 3), np.uint8), seconds=120.0, visible=[])
    rtsp = RtspServer(clip)
    rtsp.start()
    source = rtsp.url.replace("rtsp://", f"rtsp://camadmin:{SECRET}@")
    receiver_context = webhook_receiver([])
    receiver = receiver_context.__enter__()
    secret_file = tmp_path / "hook.secret"
    secret_file.write_text("camera-hook-secret\n")
    hook = f"http://127.0.0.1:{receiver.server_address[1]}/hook"
    sinks = {"control": {"type": "webhook", "url": hook, "secret_file": str(secret_file), "events": ["camera"]}}
    configure(monkeypatch, OPENLFR_STREAM_STALL_SECONDS="5", OPENLFR_SINKS=json.dumps(sinks))
    app = build_app(pipelines=True)
    add_cast(app, "ann", "olly", "ava", "aud")
    add_watchlist(app)
    told: list[CameraStateChanged] = []
    app.state.server.events.subscribe_camera_states(told.append)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with LiveServer(app) as server, sync_api.sync_playwright() as playwright:
            base = server.url
            olly, ava, aud, ann = (login(app, name) for name in ("olly", "ava", "aud", "ann"))
            north = [{"name": "north", "source": source}]
            body = draft_body(datetime.now(UTC) - timedelta(minutes=1), cameras=north, sinks=["control"])
            drafted = olly.post("/api/deployments", json=body)
            assert drafted.status_code == 201, drafted.text
            deployment_id = drafted.json()["id"]
            authorised = ava.post(f"/api/deployments/{deployment_id}/authorise", json={"justification": JUSTIFICATION})
            assert authorised.status_code == 200, authorised.text

            def state() -> str:
                return str(olly.get(f"/api/deployments/{deployment_id}").json()["camera_states"]["north"]["state"])

            def health() -> int:
                return httpx.get(f"{base}/health", timeout=10).status_code

            wait_for("the camera to stream", lambda: state() == "streaming", 30, every=0.5)
            wait_for("/health to answer 200", lambda: health() == 200, 10, every=0.5)
            queue = olly.get("/queue")
            assert queue.status_code == 200 and 'data-state="streaming"' in queue.text, queue.text[-3000:]

            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_context(viewport={"width": 1300, "height": 900}).new_page()
                log_in(page, base, "olly")
                page.wait_for_selector("#live-state.on", timeout=30_000)
                page.wait_for_selector(".tile[data-state=streaming]", timeout=30_000)
                page.evaluate("window.__sameDocument = true")

                rtsp.stop()
                took = wait_for("the camera to be down", lambda: state() in DOWN, 10, every=0.25)
                print(f"camera down {took:.1f} s after its RTSP server stopped")
                wait_for("/health to answer 503", lambda: health() == 503, 10, every=0.25)
                anonymous = httpx.get(f"{base}/health", timeout=10).json()
                assert anonymous == {"status": "degraded", "database": "up"}
                detail = aud.get("/health").json()
                [down] = [c for c in detail["cameras_down"] if c["deployment"] == deployment_id]
                assert down["camera"] == "north" and down["state"] in DOWN and down["reason"]
                shown = olly.get(f"/api/deployments/{deployment_id}").json()["camera_states"]["north"]
                assert set(shown) == {"state", "since", "reason"} and datetime.fromisoformat(shown["since"])

                tile = page.locator("[data-testid=no-signal]")
                tile.wait_for(timeout=30_000)
                banner = page.locator("#cameras [data-testid=cameras-down]")
                banner.wait_for(timeout=30_000)
                assert page.evaluate("window.__sameDocument === true"), "the queue was reloaded"
                page.screenshot(path=str(ARTIFACTS / "camera-down-queue.png"), full_page=True)
                assert "no signal since" in tile.inner_text()
                assert "1 of 1 camera down: nobody is being looked at on 'north'" in banner.inner_text()
                page.goto(f"{base}/deployments/{deployment_id}")
                page.screenshot(path=str(ARTIFACTS / "camera-down-deployment.png"), full_page=True)
                assert "nobody is being looked at on 'north'" in page.locator("[data-testid=cameras-down]").inner_text()
                matching = page.locator("[data-testid=matching]")
                assert "ok" not in (matching.get_attribute("class") or "").split()
                pages = page.content() + ann.get("/queue").text
            finally:
                browser.close()

            metrics = ann.get("/metrics").text
            up = f'openlfr_camera_up{{camera="north",deployment_id="{deployment_id}"}} 0.0'
            assert up in metrics, [line for line in metrics.splitlines() if "camera_up" in line]

            rtsp.start()
            took = wait_for("the camera to stream again", lambda: state() == "streaming", 15, every=0.25)
            print(f"camera streaming {took:.1f} s after its RTSP server started again")
            wait_for("/health to answer 200 again", lambda: health() == 200, 10, every=0.25)

            def sent() -> list[dict[str, Any]]:
                return [json.loads(body) for _, _, body in list(receiver.requests)]  # type: ignore[attr-defined]

            def told_the_sink() -> bool:
                states = [event.get("state") for event in sent()]
                down = [i for i, s in enumerate(states) if s in DOWN]
                return bool(down) and "streaming" in states[down[0] :]

            wait_for("the sink to hear of the camera going down and back", told_the_sink, 20, every=0.5)
            metrics = ann.get("/metrics").text
            assert up.replace(" 0.0", " 1.0") in metrics
            cancelled = ava.post(f"/api/deployments/{deployment_id}/cancel", json={"reason": "test over"})
            assert cancelled.status_code == 200, cancelled.text
    finally:
        rtsp.stop()
        receiver_context.__exit__(None, None, None)

    with app.state.server.sessions() as db:
        entries = db.scalars(sa.select(AuditEntry).where(AuditEntry.action == "camera.state_changed")).all()
        audited: list[dict[str, Any]] = [dict(e.details) for e in entries if e.actor == "system"]
    app.state.server.store.close()
    states = [entry["state"] for entry in audited]
    assert "streaming" in states and set(DOWN) & set(states), states
    first_down = min(states.index(s) for s in DOWN if s in states)
    assert "streaming" in states[:first_down] and "streaming" in states[first_down:], states
    events = [(event.camera, event.health.state.value) for event in told if event.deployment_id == deployment_id]
    assert ("north", "streaming") in events and any(state in DOWN for _, state in events), events
    for event in sent():
        assert event["event"] == "camera" and event["deployment_id"] == deployment_id and event["camera"] == "north"
    everything = " ".join(
        [str(audited), str(detail), str(shown), pages, str([e.payload() for e in told]), metrics, str(anonymous)]
        + [str(event) for event in sent()]
    )
    assert SECRET not in everything  # the URL is shown with its password redacted (openlfr.urls)
