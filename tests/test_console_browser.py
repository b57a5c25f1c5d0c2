"""The console in a real browser (Debian's chromium, driven by Playwright), against the real server running the
real pipeline on the Hamilton clip.

An operator logs in and watches the alert queue; a deployment of the clip is drafted and authorised; the alert
for Lin-Manuel Miranda appears in the queue without a reload; the operator confirms it, a second operator
verifies it, the outcome is recorded, and the deployment record shows it. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from openlfr.governance.roles import Role
from tests.browserkit import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from tests.conftest import require_data
from tests.serverkit import (
    JUSTIFICATION,
    PASSWORD,
    LiveServer,
    add_user,
    build_app,
    clip_deployment_body,
    configure,
    enrol_upload,
    login,
)

pytestmark = [pytest.mark.data, pytest.mark.slow]


def _alert_timings(app: Any, shown_at: datetime) -> dict[str, float]:
    import sqlalchemy as sa

    from openlfr.store.alert_models import Alert

    with app.state.server.sessions() as db:
        alert = db.scalars(sa.select(Alert).order_by(Alert.id)).first()
        assert alert is not None
        return {
            "frame_to_commit_ms": round(float(alert.latency_ms or 0.0), 1),
            "commit_to_queue_s": round((shown_at - alert.created_at).total_seconds(), 3),
            "clip_time_of_alert_s": round(float(alert.media_time_s or 0.0), 2),
        }


def new_page(browser: Any, width: int = 1300) -> Any:
    return browser.new_context(viewport={"width": width, "height": 900}).new_page()


def log_in(page: Any, base: str, username: str, landing: str | None = "/queue", password: str = PASSWORD) -> Any:
    """Log ``page`` in through the console's form; wait for ``landing`` (None: for whatever page answers)."""
    page.goto(f"{base}/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    if landing is None:
        page.wait_for_load_state()
    else:
        page.wait_for_url(f"{base}{landing}")
    return page


def test_operator_confirms_verifies_and_records_the_hamilton_alert(monkeypatch: pytest.MonkeyPatch) -> None:
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.skip(f"no browser at {CHROMIUM} (Debian package chromium; `make system-deps` as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    pytest.importorskip("openlfr.stream.pipeline", reason="live pipeline (issue 4) not installed")
    clip = require_data("video", "short_hamilton_clip.mp4")
    stills = require_data("stills")
    configure(monkeypatch, OPENLFR_RETENTION_INTERVAL_SECONDS="5")
    app = build_app(background=True, pipelines=True)
    for name, role in [("ann", Role.ADMIN), ("olly", Role.OPERATOR), ("omar", Role.OPERATOR), ("ava", Role.AUTHORISER)]:
        add_user(app, name, role)
    ARTIFACTS.mkdir(exist_ok=True)

    with LiveServer(app) as server, sync_api.sync_playwright() as playwright:
        base = server.url
        # The watchlist of issue 4: the two people of the clip and the gallery as fillers, through the upload API.
        ann = login(app, "ann")
        assert ann.post("/api/watchlists", json={"name": "hamilton", "purpose": "browser test"}).status_code == 201
        enrol_upload(ann, "hamilton", "LMM-001", "Lin-Manuel Miranda", [stills / "lin-manuel-miranda.png"])
        enrol_upload(ann, "hamilton", "AL-002", "Alex Lacamoire", [stills / "alex-lacamoire.png"])
        for folder in sorted((stills / "gallery").iterdir()):
            if folder.name != "alex_lacamoire":
                enrol_upload(
                    ann,
                    "hamilton",
                    folder.name,
                    folder.name.replace("_", " ").title(),
                    sorted(folder.iterdir()),
                    "other",
                )

        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            operator = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
            console: list[str] = []
            operator.on("console", lambda message: console.append(message.text))
            log_in(operator, base, "olly")
            operator.wait_for_selector("#live-state.on", timeout=10_000)  # the event stream is connected
            operator.evaluate("window.__sameDocument = true")  # survives until the page is reloaded

            # Drafted by the operator, authorised by someone else, live from now; the server runs the clip.
            olly, ava = login(app, "olly"), login(app, "ava")
            body = clip_deployment_body(clip, "hamilton")
            deployment = olly.post("/api/deployments", json=body).json()
            authorised = ava.post(
                f"/api/deployments/{deployment['id']}/authorise", json={"justification": JUSTIFICATION}
            )
            assert authorised.status_code == 200, authorised.text

            # The camera tile appears without a reload once the deployment is live, and shows pictures.
            operator.wait_for_function(
                "() => [...document.querySelectorAll('#cameras img')].some(i => i.naturalWidth > 0)", timeout=30_000
            )
            row = operator.locator(".alert-row", has_text="Lin-Manuel Miranda").first
            try:
                row.wait_for(timeout=90_000)
            except Exception:
                operator.screenshot(path=str(ARTIFACTS / "console-queue-timeout.png"), full_page=True)
                state = olly.get(f"/api/deployments/{deployment['id']}").json()
                raise AssertionError(
                    f"no alert row: alerts {olly.get('/api/alerts').json()}, deployment {state}, console {console}"
                ) from None
            shown_at = datetime.now(UTC)
            assert operator.evaluate("window.__sameDocument === true"), "the queue was reloaded"
            timings = _alert_timings(app, shown_at)
            (ARTIFACTS / "console-timings.json").write_text(json.dumps(timings, indent=1))
            # Committed, announced by the event stream (polled twice a second), fetched and drawn: within seconds.
            assert timings["commit_to_queue_s"] < 5.0, timings
            operator.screenshot(path=str(ARTIFACTS / "console-queue-alert.png"), full_page=True)
            assert "awaiting decision" in row.inner_text()

            row.click()
            operator.wait_for_selector("button.decision-confirmed")
            assert operator.locator("img[alt='probe from the camera']").is_visible()
            assert operator.locator("img[alt='watchlist reference']").is_visible()
            operator.click("button.decision-confirmed")
            operator.click("dialog[open] [data-confirm-yes]")  # a confirmed match is confirmed twice
            operator.wait_for_selector("[data-testid=stage]:has-text('awaiting verification')")
            alert_url = operator.url

            second = browser.new_context().new_page()
            log_in(second, base, "omar")
            second.goto(alert_url)
            second.click("button:has-text('Verify')")
            second.wait_for_selector("[data-testid=verified]")

            operator.reload()
            operator.click("button:has-text('Engaged and arrested')")
            operator.click("dialog[open] [data-confirm-yes]")  # so is an outcome
            operator.wait_for_selector("[data-testid=outcome]:has-text('Engaged and arrested')")
            operator.screenshot(path=str(ARTIFACTS / "console-alert-closed.png"), full_page=True)

            operator.goto(f"{base}/deployments/{deployment['id']}")
            record = operator.locator("[data-testid=record]")
            assert operator.locator("[data-testid=confirmed]").inner_text() == "1"
            assert operator.locator("[data-testid=verified-count]").inner_text() == "1"
            assert operator.locator("[data-testid=arrested]").inner_text() == "1"
            assert int(operator.locator("[data-testid=faces-seen]").inner_text()) > 0
            assert record.is_visible()
            operator.screenshot(path=str(ARTIFACTS / "console-deployment-record.png"), full_page=True)
        finally:
            browser.close()

    alerts = login(app, "olly").get(f"/api/alerts?deployment={deployment['id']}").json()
    names = [a["person_name"] for a in alerts]
    assert "Lin-Manuel Miranda" in names
    assert set(names) <= {"Lin-Manuel Miranda", "Alex Lacamoire"}  # nobody else on the list alerted
    assert all(1 <= a["looks"] <= 3 for a in alerts), "each alert keeps its track's best looks (issue 20 item 2)"
    app.state.server.store.close()


def test_console_forms_for_admin_operator_and_authoriser(monkeypatch: pytest.MonkeyPatch) -> None:
    """The console's forms reach the API with their CSRF token: a watchlist and an enrolment by the admin (with
    a photo upload), a draft by an operator, its authorisation by an authoriser, a setting, the audit page."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no browser at {CHROMIUM} (Debian package chromium; `make system-deps` as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    photo = require_data("stills", "lin-manuel-miranda.png")
    configure(monkeypatch)
    app = build_app()
    for name, role in [("ann", Role.ADMIN), ("olly", Role.OPERATOR), ("ava", Role.AUTHORISER)]:
        add_user(app, name, role)
    ARTIFACTS.mkdir(exist_ok=True)
    with LiveServer(app) as server, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:

            def page_of(username: str, landing: str) -> Any:
                return log_in(new_page(browser), server.url, username, landing)

            ann = page_of("ann", "/deployments")
            ann.goto(f"{server.url}/watchlists")
            form = ann.locator("form[data-api='/api/watchlists']")
            form.locator("input[name=name]").fill("station-2030")
            form.locator("button").click()
            ann.wait_for_selector("td:has-text('station-2030')")
            form = ann.locator("form[data-multipart]")
            form.locator("input[name=person]").fill("LMM-001")
            form.locator("input[name=display_name]").fill("Lin-Manuel Miranda")
            form.locator("input[type=file]").set_input_files(str(photo))
            form.locator("button").click()
            ann.wait_for_function("() => document.querySelector('table').innerText.includes('\\t1\\t1')")

            olly = page_of("olly", "/queue")
            olly.goto(f"{server.url}/deployments")
            form = olly.locator("form[data-api='/api/deployments']")
            form.locator("input[name=name]").fill("Station")
            form.locator("input[name=place]").fill("Station forecourt")
            form.locator("textarea[name=purpose]").fill("Locate people wanted on warrant")
            form.locator("input[name=starts_at]").fill("2030-01-01T10:00:00")
            form.locator("input[name=ends_at]").fill("2030-01-01T14:00:00")
            form.locator("input[name=target_one_in]").fill("33000")
            form.locator("textarea[name=cameras]").fill("entrance = rtsp://10.0.0.5/stream1\nexit = camera:0")
            form.locator("button[type=submit]").click()
            olly.wait_for_url(f"{server.url}/deployments/*")
            assert olly.locator("[data-testid=phase]").inner_text() == "draft"
            assert olly.locator("textarea[name=justification]").count() == 0  # operators do not authorise

            ava = page_of("ava", "/deployments?state=draft")  # an authoriser lands on the drafts
            ava.goto(olly.url)
            ava.fill("textarea[name=justification]", JUSTIFICATION)
            ava.click("button:has-text('Authorise')")
            ava.wait_for_selector("[data-testid=phase]:has-text('scheduled')")
            assert "picked for a target of 1 in 33,000 faces" in ava.inner_text("main")

            ann.goto(f"{server.url}/settings")
            ann.uncheck("input[name=require_second_verifier]")
            ann.click("button:has-text('Save')")
            ann.wait_for_load_state("networkidle")
            ann.goto(f"{server.url}/audit")
            verdict = ann.locator("[data-testid=verdict]").inner_text()
            assert verdict.startswith("audit log intact")
            text = ann.inner_text("table")
            for action in ("watchlist.create", "watchlist.enrol", "deployment.draft", "deployment.authorise"):
                assert action in text
            assert "settings.change" in text
            ann.screenshot(path=str(ARTIFACTS / "console-audit.png"), full_page=True)

            # The API docs render from assets the server itself serves: nothing is fetched from elsewhere.
            fetched: list[str] = []
            ann.on("request", lambda request: fetched.append(request.url))
            ann.goto(f"{server.url}/docs")
            ann.wait_for_selector(".swagger-ui .info .title:has-text('OpenLFR operator server')")
            ann.wait_for_selector(".opblock-summary-path:has-text('/api/deployments')")
            elsewhere = [url for url in fetched if not url.startswith((server.url, "data:"))]
            assert fetched and not elsewhere, elsewhere
        finally:
            browser.close()
    app.state.server.store.close()
