"""Retrospective searches in the console (issue 20 item 5), in a real browser against the real server and pipeline.

An operator uploads the Hamilton clip through the deployments page: the upload's progress bar (bytes sent) reaches
its end, and the upload is chosen as the draft's footage by its reference (``footage:NAME``; no path on the server
anywhere on the page). The draft is saved from the form; its page shows the search's progress bar, not started.
Another authoriser authorises it through the API; the bar then moves by itself (the server's progress events, no
reload) to the end of the footage, and says it has finished. The pages pass axe and fit at 1366 and 390 px.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests import browserkit
from tests.conftest import require_data
from tests.serverkit import JUSTIFICATION, LiveServer, add_cast, add_watchlist, build_app, configure, login
from tests.waitkit import hang_guard

pytestmark = [pytest.mark.slow, pytest.mark.data]

# The progress bar's values as the page sets them, recorded by the page itself (a reload would lose them).
RECORD_BAR = """() => {
    const bar = document.querySelector('[data-testid=progress-bar]');
    window.__barSeen = [Number(bar.value)];
    new MutationObserver(() => window.__barSeen.push(Number(bar.value)))
        .observe(bar, {attributes: true, attributeFilter: ['value', 'max']});
}"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, LiveServer, Path]]:
    clip = require_data("video", "short_hamilton_clip.mp4")
    data_dir = tmp_path_factory.mktemp("retrospective-data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENLFR_DATA_DIR", str(data_dir))
        configure(patch)
        app = build_app(background=True, pipelines=True)
        add_cast(app)
        add_watchlist(app)
        with LiveServer(app) as server:
            yield app, server, clip
        app.state.server.store.close()


def test_upload_choose_and_watch_the_search_progress(site: tuple[Any, LiveServer, Path], browser: Any) -> None:
    app, server, clip = site
    data_dir = str(app.state.server.settings.data_dir)
    page = browserkit.log_in(browserkit.new_page(browser), server.url, "olly")
    page.goto(f"{server.url}/deployments")

    # The upload: a real <progress>, labelled, that ends at the file's size.
    bar = page.get_by_label("Upload progress")
    assert bar.evaluate("el => el.tagName") == "PROGRESS"
    upload = page.locator("form[data-upload]")
    upload.locator("input[type=file]").set_input_files(str(clip))
    upload.locator("button[type=submit]").click()
    page.wait_for_function(
        "() => document.querySelector('[data-upload-status]').textContent.includes('uploaded')",
        timeout=hang_guard(30) * 1000,
    )
    assert bar.evaluate("el => [el.value, el.max]") == [clip.stat().st_size, clip.stat().st_size]
    assert bar.evaluate("el => el.position") == 1.0

    # Chosen as the draft's footage, by its reference only.
    chosen = page.locator("select#footage").input_value()
    assert chosen.startswith("footage:") and chosen.endswith("short_hamilton_clip.mp4"), chosen
    assert page.locator("#draft-kind").input_value() == "retrospective"
    cameras = page.locator("textarea[name=cameras]").input_value()
    assert cameras == f"short_hamilton_clip = {chosen}", cameras
    assert data_dir not in page.content()
    browserkit.screenshot(page, "retrospective-uploaded-1366")

    # The draft, its window around now in the places' zone (UTC here: the setting's default).
    now = datetime.now(UTC)
    form = page.locator("form[data-api='/api/deployments']")
    form.locator("input[name=name]").fill("Hamilton footage")
    form.locator("input[name=place]").fill("Theatre foyer")
    form.locator("textarea[name=purpose]").fill("Find the people on the wanted watchlist in recorded footage")
    form.locator("input[name=starts_at]").fill((now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M"))
    form.locator("input[name=ends_at]").fill((now + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M"))
    form.locator("input[name=threshold]").fill("0.6")
    form.locator("button[type=submit]").click()
    page.wait_for_url(lambda url: "/deployments/" in url)
    deployment_id = int(page.url.rsplit("/", 1)[1])
    drafted = login(app, "olly").get(f"/api/deployments/{deployment_id}").json()
    assert drafted["kind"] == "retrospective" and drafted["cameras"] == [
        {"name": "short_hamilton_clip", "source": chosen}
    ]

    # Its page: the bar waits at 0; once authorised it moves by itself to the end of the footage.
    progress = page.get_by_test_id("progress-bar")
    assert progress.evaluate("el => el.value") == 0
    assert "not started" in page.get_by_test_id("progress").inner_text()
    page.evaluate(RECORD_BAR)
    authorised = login(app, "abe").post(
        f"/api/deployments/{deployment_id}/authorise", json={"justification": JUSTIFICATION}
    )
    assert authorised.status_code == 200, authorised.text
    page.wait_for_function(
        "() => document.querySelector('[data-testid=progress]').textContent.includes('finished')",
        timeout=hang_guard(240) * 1000,
    )
    seen = page.evaluate("window.__barSeen")  # still there: the page was never reloaded
    value, maximum = progress.evaluate("el => [el.value, el.max]")
    assert value == maximum and abs(maximum - drafted["media_seconds"]) < 0.01, (value, maximum)
    assert seen[0] == 0 and seen[-1] == maximum, seen
    assert "100%" in page.get_by_test_id("progress").inner_text()
    page.get_by_test_id("phase").filter(has_text="ended").wait_for(timeout=10_000)  # all read: it has ended
    # The stream of a finished search, for any role (the auditor too): its last progress, then it ends.
    told = login(app, "aud").get(f"/api/deployments/{deployment_id}/events")
    assert told.status_code == 200 and told.headers["content-type"].startswith("text/event-stream")
    [event] = [json.loads(line[6:]) for line in told.text.splitlines() if line.startswith("data: ")]
    assert event["finished"] and event["progress"] == 1.0 and event["phase"] == "ended", event

    problems = browserkit.check_page(page, "retrospective-search-operator-1366")
    for user, width in (("aud", browserkit.NARROW), ("ann", browserkit.NARROW)):
        other = browserkit.log_in(browserkit.new_page(browser, width), server.url, user)
        other.goto(f"{server.url}/deployments/{deployment_id}")
        problems += browserkit.check_page(other, f"retrospective-search-{user}-{width}")
        other.context.close()
    narrow = browserkit.log_in(browserkit.new_page(browser, browserkit.NARROW), server.url, "olly")
    narrow.goto(f"{server.url}/deployments")
    problems += browserkit.check_page(narrow, "retrospective-upload-operator-390")
    assert problems == []
