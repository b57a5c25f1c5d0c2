"""Forms that say what they mean (issue 20 item 7), in a real browser against one real server.

- The draft's times are entered in the zone of the deployments' places (``OPENLFR_TIME_ZONE``, here
  Europe/London), and their labels say so, whatever the browser's own zone (here Europe/Paris): 09:00 entered
  is 09:00 in London in the API. The deployment page shows the window in that zone too, named.
- An end before the start, or a window longer than ``deployment_max_window_hours``, is refused next to the field
  before anything is sent.
- The API's refusals of a field read as plain words naming the field ("Camera 1 source: ..."), not pydantic's.
- Cancelling and ending each have a reason box of their own; the reason for ending is audited.
- A draft's watchlist size says the snapshot is taken at authorisation (and how many people the list holds now),
  not "0".
- The pages pass axe (no serious or critical violation) and have no horizontal scroll, at 1366 and 390 px.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from openlfr.store.governance_models import AuditEntry
from tests import browserkit
from tests.serverkit import JUSTIFICATION, LiveServer, add_cast, add_watchlist, build_app, configure, draft_body, login

pytestmark = pytest.mark.slow

ZONE = "Europe/London"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, LiveServer]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENLFR_DATA_DIR", str(tmp_path_factory.mktemp("forms-data")))
        configure(patch, OPENLFR_TIME_ZONE=ZONE, OPENLFR_DEPLOYMENT_MAX_WINDOW_HOURS="12")
        app = build_app()
        add_cast(app)
        add_watchlist(app, people=3)
        with LiveServer(app) as server:
            yield app, server
        app.state.server.store.close()


def _paris_page(browser: Any, width: int = browserkit.WIDE) -> Any:
    """A page whose browser believes it is in Paris (an hour ahead of London in summer and in winter)."""
    context = browser.new_context(viewport={"width": width, "height": 900}, timezone_id="Europe/Paris")
    return context.new_page()


def _fill_draft(page: Any, starts: str, ends: str, cameras: str = "entrance = rtsp://127.0.0.1:8554/cam") -> None:
    form = page.locator("form[data-api='/api/deployments']")
    form.locator("input[name=name]").fill("Summer fair")
    form.locator("input[name=place]").fill("Town square")
    form.locator("textarea[name=purpose]").fill("Locate people wanted for violent offences")
    form.locator("input[name=starts_at]").fill(starts)
    form.locator("input[name=ends_at]").fill(ends)
    form.locator("input[name=threshold]").fill("0.6")
    form.locator("textarea[name=cameras]").fill(cameras)


def _posts_to(page: Any, path: str) -> list[str]:
    sent: list[str] = []
    page.on(
        "request",
        lambda request: sent.append(request.url) if request.method == "POST" and path in request.url else None,
    )
    return sent


def test_times_are_entered_and_shown_in_the_places_zone(site: tuple[Any, LiveServer], browser: Any) -> None:
    app, server = site
    page = browserkit.log_in(_paris_page(browser), server.url, "olly")
    page.goto(f"{server.url}/deployments")
    starts = page.get_by_label(f"Starts ({ZONE})")
    ends = page.get_by_label(f"Ends ({ZONE})")
    assert starts.count() == 1 and ends.count() == 1
    # 1 July 2027: London is on summer time (UTC+1), Paris on UTC+2; 09:00 in London is 08:00 UTC.
    _fill_draft(page, "2027-07-01T09:00", "2027-07-01T11:30")
    page.locator("form[data-api='/api/deployments'] button[type=submit]").click()
    page.wait_for_url(lambda url: "/deployments/" in url)
    deployment_id = int(page.url.rsplit("/", 1)[1])
    drafted = login(app, "olly").get(f"/api/deployments/{deployment_id}").json()
    assert datetime.fromisoformat(drafted["starts_at"]) == datetime(2027, 7, 1, 8, 0, tzinfo=UTC), drafted
    assert datetime.fromisoformat(drafted["ends_at"]) == datetime(2027, 7, 1, 10, 30, tzinfo=UTC), drafted
    window = page.get_by_test_id("window").inner_text()
    assert "2027-07-01 09:00" in window and "11:30" in window and ZONE in window, window

    # The draft's watchlist: its snapshot is taken at authorisation; the list holds 3 people now.
    size = page.get_by_test_id("watchlist-size").inner_text()
    assert "authoris" in size and "3" in size, size


def test_an_end_before_the_start_or_too_long_a_window_is_refused_before_sending(
    site: tuple[Any, LiveServer], browser: Any
) -> None:
    _, server = site
    page = browserkit.log_in(_paris_page(browser), server.url, "olly")
    page.goto(f"{server.url}/deployments")
    sent = _posts_to(page, "/api/deployments")
    form = page.locator("form[data-api='/api/deployments']")

    _fill_draft(page, "2027-07-01T09:00", "2027-07-01T08:00")
    form.locator("button[type=submit]").click()
    message = page.locator("#ends_at-problem")
    message.wait_for(state="visible", timeout=5_000)
    assert "after" in message.inner_text() and "start" in message.inner_text(), message.inner_text()
    assert form.locator("input[name=ends_at]").get_attribute("aria-invalid") == "true"

    _fill_draft(page, "2027-07-01T09:00", "2027-07-02T09:00")  # 24 h: the limit here is 12
    form.locator("button[type=submit]").click()
    page.wait_for_function(
        "() => (document.querySelector('#ends_at-problem') || {}).textContent.includes('12 h')", timeout=5_000
    )
    page.wait_for_timeout(300)  # give a (wrong) request the time to leave
    assert sent == []


def test_the_apis_refusal_names_the_field_in_plain_words(site: tuple[Any, LiveServer], browser: Any) -> None:
    _, server = site
    page = browserkit.log_in(_paris_page(browser), server.url, "olly")
    page.goto(f"{server.url}/deployments")
    _fill_draft(page, "2027-07-01T09:00", "2027-07-01T10:00", cameras="entrance =")
    form = page.locator("form[data-api='/api/deployments']")
    with page.expect_response(lambda response: response.url.endswith("/api/deployments")) as answer:
        form.locator("button[type=submit]").click()
    assert answer.value.status == 422
    box = form.locator("[data-error]")
    box.wait_for(state="visible", timeout=5_000)
    text = box.inner_text()
    assert "Camera 1 source" in text and "address" in text, text
    assert "String should" not in text and "cameras.0" not in text, text
    # The same words beside the field.
    assert "Camera 1 source" in page.locator("#cameras-problem").inner_text()


def test_cancelling_and_ending_each_have_their_own_reason(site: tuple[Any, LiveServer], browser: Any) -> None:
    app, server = site
    olly, abe = login(app, "olly"), login(app, "abe")
    drafted = olly.post("/api/deployments", json=draft_body(datetime.now(UTC) - timedelta(minutes=1), hours=1))
    assert drafted.status_code == 201, drafted.text
    deployment_id = drafted.json()["id"]
    assert abe.post(f"/api/deployments/{deployment_id}/authorise", json={"justification": JUSTIFICATION}).is_success

    page = browserkit.log_in(_paris_page(browser), server.url, "ava")
    page.goto(f"{server.url}/deployments/{deployment_id}")
    cancel_reason = page.get_by_label("Reason for cancelling")
    end_reason = page.get_by_label("Reason for ending it now")
    assert cancel_reason.count() == 1 and end_reason.count() == 1
    assert page.get_by_label("Reason", exact=True).count() == 0  # no box that could belong to either
    end_form = page.locator("form", has=end_reason)
    assert end_form.locator("button", has_text="End now").count() == 1
    assert end_form.locator("button", has_text="Cancel deployment").count() == 0
    end_reason.fill("The crowd has dispersed; nobody is left to scan.")
    end_form.locator("button", has_text="End now").click()
    page.get_by_test_id("phase").filter(has_text="ended").wait_for(timeout=10_000)
    with app.state.server.sessions() as db:
        entry = db.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == "deployment.end").order_by(AuditEntry.seq.desc())
        ).first()
    assert entry is not None and entry.actor == "ava"
    assert entry.details["reason"] == "The crowd has dispersed; nobody is left to scan."


@pytest.mark.parametrize("width", browserkit.WIDTHS)
def test_the_draft_and_deployment_pages_pass_axe_and_fit(
    site: tuple[Any, LiveServer], browser: Any, width: int
) -> None:
    app, server = site
    olly, abe = login(app, "olly"), login(app, "abe")
    drafted = olly.post("/api/deployments", json=draft_body(datetime.now(UTC) - timedelta(minutes=1), hours=1))
    deployment_id = drafted.json()["id"]
    problems: list[str] = []
    for user in ("olly", "ann"):
        page = browserkit.log_in(_paris_page(browser, width), server.url, user)
        page.goto(f"{server.url}/deployments")
        problems += browserkit.check_page(page, f"forms-deployments-{user}-{width}")
        page.context.close()
    assert abe.post(f"/api/deployments/{deployment_id}/authorise", json={"justification": JUSTIFICATION}).is_success
    for user in ("ava", "aud"):
        page = browserkit.log_in(_paris_page(browser, width), server.url, user)
        page.goto(f"{server.url}/deployments/{deployment_id}")
        problems += browserkit.check_page(page, f"forms-deployment-{user}-{width}")
        page.context.close()
    assert problems == []


def test_reembedding_shows_that_it_is_working(site: tuple[Any, LiveServer], browser: Any) -> None:
    """While a watchlist is re-embedded the result box shows a (labelled, indeterminate) progress bar and the
    seconds gone, not only "working..."; the page records what it showed, so the test cannot miss a quick run."""
    _, server = site
    page = browserkit.log_in(_paris_page(browser), server.url, "ann")
    page.goto(f"{server.url}/watchlists")
    page.evaluate(
        """() => {
            const box = document.querySelector('#reembed-result');
            window.__working = [];
            new MutationObserver(() => {
                const bar = box.querySelector('progress');
                if (bar) window.__working.push([bar.getAttribute('aria-label'), bar.hasAttribute('value'),
                    (box.querySelector('[data-elapsed]') || {}).textContent]);
            }).observe(box, {childList: true, subtree: true, characterData: true});
        }"""
    )
    page.locator("[data-testid=reembed]").first.click()
    page.get_by_test_id("reembed-summary").wait_for(timeout=60_000)
    working = page.evaluate("window.__working")
    assert working, "no progress bar while re-embedding"
    label, determinate, elapsed = working[0]
    assert label and "embed" in label.lower() and not determinate and elapsed.endswith(" s"), working[0]
