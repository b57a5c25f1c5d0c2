"""Alerts and cameras going down are announced on every console page an operator or authoriser has open (issue 20
item 1): the tab title counts the undecided alerts, a chime plays (Web Audio; a toggle in the bar, remembered per
user), a desktop notification is shown while the tab is hidden. And the bar itself at a phone's width (item 6): the
menu collapses behind a disclosure button, a skip link leads to the content.

One server and one browser for the module. Alerts are written the way the live pipeline commits them
(``serverkit.add_alert``) and a camera's state the way its runner stores it (``save_camera_state``): the console
learns of both only through the event stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from openlfr.store.progress_models import save_camera_state
from tests import browserkit
from tests.serverkit import (
    JUSTIFICATION,
    LiveServer,
    add_alert,
    add_cast,
    add_watchlist,
    build_app,
    configure,
    draft_body,
    login,
)

pytestmark = pytest.mark.slow

WAIT_MS = browserkit.EVENT_WAIT_MS


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, LiveServer, int]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENLFR_DATA_DIR", str(tmp_path_factory.mktemp("announce-data")))
        configure(patch)
        app = build_app()
        add_cast(app, "olly", "ava", "abe")
        add_watchlist(app, people=3)
        olly, ava = login(app, "olly"), login(app, "ava")
        drafted = olly.post("/api/deployments", json=draft_body(datetime.now(UTC) - timedelta(seconds=5))).json()
        authorised = ava.post(f"/api/deployments/{drafted['id']}/authorise", json={"justification": JUSTIFICATION})
        assert authorised.status_code == 200, authorised.text
        with LiveServer(app) as server:
            yield app, server, drafted["id"]
        app.state.server.store.close()


TRACKS = iter(range(100, 10_000))


def raise_alert(app: Any, deployment: int) -> int:
    return add_alert(app, deployment, "P001", track_id=next(TRACKS))


def undecided(app: Any) -> int:
    """What the tab title should count, from the API (every alert of the queue without a decision)."""
    with app.state.server.sessions() as db:
        from sqlalchemy import func, select

        from openlfr.store.alert_models import Alert
        from openlfr.store.governance_models import AlertReview

        return int(
            db.scalar(
                select(func.count())
                .select_from(Alert)
                .outerjoin(AlertReview, AlertReview.alert_id == Alert.id)
                .where(Alert.deployment_id.is_not(None), AlertReview.decision.is_(None))
            )
            or 0
        )


def listening_page(browser: Any, base: str, user: str, path: str, hidden: bool = False) -> Any:
    """A page of ``user`` at ``path`` whose event stream has told it the queue's state once (the baseline)."""
    options: dict[str, Any] = {"viewport": {"width": browserkit.WIDE, "height": 900}}
    if hidden:
        options["permissions"] = ["notifications"]
    context = browser.new_context(**options)
    # Counts the permission requests (and makes them): the console must ask once, on a gesture, never on load.
    context.add_init_script(
        "window.__asked = 0; const ask = Notification.requestPermission.bind(Notification);"
        "Notification.requestPermission = (...a) => { window.__asked += 1; return ask(...a); };"
    )
    if hidden:
        # Headless Chromium has no window manager: a tab cannot really be sent to the background, and Playwright
        # has no way to hide one. The page decides with the standard Page Visibility API, so the honest stand-in is
        # to make that API say "hidden" before any script runs; everything after it (the permission, the
        # Notification constructor, the event stream) is the browser's own.
        context.add_init_script(
            "Object.defineProperty(document, 'visibilityState', {get: () => 'hidden'});"
            "Object.defineProperty(document, 'hidden', {get: () => true});"
        )
    page = context.new_page()
    browserkit.log_in(page, base, user)
    page.goto(f"{base}{path}")
    assert page.evaluate("window.__asked") == 0  # not on load
    # A click on the page: browsers start audio only after a gesture, as an operator's first click does.
    page.locator("main").click(position={"x": 5, "y": 5})
    page.wait_for_function("() => document.body.dataset.undecided !== undefined", timeout=WAIT_MS)
    return page


def wait_title_count(page: Any, count: int) -> None:
    page.wait_for_function(f"() => document.title.startsWith('({count}) ')", timeout=WAIT_MS)


def test_a_new_alert_counts_in_the_title_and_chimes_on_any_page(
    site: tuple[Any, LiveServer, int], browser: Any
) -> None:
    app, server, deployment = site
    operator = listening_page(browser, server.url, "olly", "/deployments")
    authoriser = listening_page(browser, server.url, "ava", "/records")
    assert operator.evaluate("window.__asked") == 1  # the first click asked for notifications
    assert operator.locator("[data-chime-toggle]").get_attribute("aria-pressed") == "true"  # on for operators
    assert authoriser.locator("[data-chime-toggle]").get_attribute("aria-pressed") == "false"

    raise_alert(app, deployment)
    count = undecided(app)
    assert count >= 1
    wait_title_count(operator, count)
    assert operator.title() == f"({count}) Deployments · OpenLFR"
    operator.wait_for_function("() => window.__openlfrChimes === 1", timeout=WAIT_MS)
    assert "New alert" in operator.locator("#announcements").inner_text()
    # The authoriser's page counts too; its sound is off until they turn it on.
    wait_title_count(authoriser, count)
    assert authoriser.title() == f"({count}) Records · OpenLFR"
    assert authoriser.evaluate("window.__openlfrChimes") == 0
    # The tab is visible: the page and the chime say it, no desktop notification.
    assert operator.evaluate("window.__openlfrNotifications.length") == 0

    # A reload (or another page) shows the count again but does not announce the same alert twice.
    operator.goto(f"{server.url}/watchlists")
    operator.locator("main").click(position={"x": 5, "y": 5})
    operator.wait_for_function("() => document.body.dataset.undecided !== undefined", timeout=WAIT_MS)
    assert operator.evaluate("window.__asked") == 0  # asked once, not at every page's first click
    wait_title_count(operator, count)
    operator.wait_for_timeout(1000)
    assert operator.evaluate("window.__openlfrChimes") == 0
    operator.context.close()
    authoriser.context.close()


def test_the_sound_toggle_is_remembered_and_silences_the_chime(site: tuple[Any, LiveServer, int], browser: Any) -> None:
    app, server, deployment = site
    page = listening_page(browser, server.url, "olly", "/queue")
    toggle = page.locator("[data-chime-toggle]")
    if toggle.get_attribute("aria-pressed") == "true":
        toggle.click()
    assert toggle.get_attribute("aria-pressed") == "false"
    page.reload()
    page.locator("main").click(position={"x": 5, "y": 5})
    page.wait_for_function("() => document.body.dataset.undecided !== undefined", timeout=WAIT_MS)
    assert page.locator("[data-chime-toggle]").get_attribute("aria-pressed") == "false"  # remembered

    raise_alert(app, deployment)
    wait_title_count(page, undecided(app))
    # Turned back on, the next alert chimes once: had the silenced one played, it would have ended first.
    page.locator("[data-chime-toggle]").click()
    raise_alert(app, deployment)
    wait_title_count(page, undecided(app))
    page.wait_for_function("() => window.__openlfrChimes >= 1", timeout=WAIT_MS)
    page.wait_for_timeout(500)
    assert page.evaluate("window.__openlfrChimes") == 1
    page.context.close()


def test_a_hidden_tab_shows_a_desktop_notification_and_a_camera_down_is_announced(
    site: tuple[Any, LiveServer, int], browser: Any
) -> None:
    app, server, deployment = site
    page = listening_page(browser, server.url, "abe", "/deployments", hidden=True)
    page.locator("[data-chime-toggle]").click()  # an authoriser turns the sound on
    assert page.evaluate("Notification.permission") == "granted"

    raise_alert(app, deployment)
    wait_title_count(page, undecided(app))
    page.wait_for_function("() => window.__openlfrNotifications.length === 1", timeout=WAIT_MS)
    note = page.evaluate("window.__openlfrNotifications[0]")
    assert note["title"] == "OpenLFR: new alert"
    assert "Person" not in note["body"]  # no name on a desktop notification
    page.wait_for_function("() => window.__openlfrChimes === 1", timeout=WAIT_MS)

    with app.state.server.sessions() as db:
        save_camera_state(db, deployment, "entrance", "failed", datetime.now(UTC), "the camera refused the login")
        db.commit()
    page.wait_for_function("() => window.__openlfrNotifications.length === 2", timeout=WAIT_MS)
    assert page.evaluate("window.__openlfrNotifications[1]") == {
        "title": "OpenLFR: camera down",
        "body": "Camera entrance is down (failed)",
    }
    page.wait_for_function("() => window.__openlfrChimes === 2", timeout=WAIT_MS)
    assert "Camera entrance is down" in page.locator("#announcements").inner_text()
    page.context.close()


def test_the_bar_collapses_at_a_phones_width_and_a_skip_link_leads_to_the_content(
    site: tuple[Any, LiveServer, int], browser: Any
) -> None:
    _, server, _ = site
    page = browserkit.new_page(browser, browserkit.NARROW)
    browserkit.log_in(page, server.url, "olly")
    page.goto(f"{server.url}/deployments")
    menu = page.locator("[data-menu-toggle]")
    nav = page.locator("header nav")
    assert menu.is_visible() and menu.get_attribute("aria-expanded") == "false"
    assert not nav.is_visible()
    page.keyboard.press("Tab")  # the first stop on the page is the skip link
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    menu.focus()
    page.keyboard.press("Enter")
    assert menu.get_attribute("aria-expanded") == "true" and nav.is_visible()
    # The open menu stays on the dark bar: each link is inside the header's box.
    header = page.locator("header.top").bounding_box()
    for link in nav.locator("a").all():
        box = link.bounding_box()
        assert box is not None and header is not None
        assert box["y"] + box["height"] <= header["y"] + header["height"] and box["x"] + box["width"] <= 390
    assert browserkit.check_page(page, "announce-menu-open-390") == []
    page.keyboard.press("Escape")
    assert menu.get_attribute("aria-expanded") == "false" and not nav.is_visible()
    page.context.close()
