"""Every console page, as each role sees it, at a desktop's and a phone's width (issue 20 item 6 and the acceptance):
no serious or critical axe-core violation, no page wider than the viewport, every control reached by the keyboard
with a visible focus outline, no script error; in dark mode no contrast failure; and, walking every page as the
auditor, no face picture anywhere (no image of the API's, no picture in a style, none fetched).

The pages are found as a person finds them: the bar's links, then every link on those pages, once per kind of page
(``/deployments/7`` and ``/deployments/8`` are one kind), plus the detail pages of the fixture's data. Every problem
of every page is collected first, so that one run lists them all. Screenshots: test-artifacts/screens/sweep-*.png.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from PIL import Image, ImageDraw

from openlfr.store.alert_models import Alert
from openlfr.store.governance_models import SnapshotImage
from openlfr.store.models import ReferenceImage
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

ROLES = {"ann": "admin", "olly": "operator", "ava": "authoriser", "aud": "auditor"}
MAX_PAGES = 30  # per role: kinds of page, not links
MAX_TABS = 80  # keyboard stops checked per page
NOT_PAGES = ("/api/", "/static/", "/logout", "/login")


@dataclass
class Site:
    app: Any
    server: LiveServer
    live: int
    draft: int
    alert: int
    confirmed: int
    details: dict[str, list[str]] = field(default_factory=dict)


def silhouette(shade: int) -> bytes:
    """A drawn head and shoulders (no one's face): the pages show real pictures, and the tour's screenshots
    (docs/console.md) show nobody."""
    picture = Image.new("RGB", (160, 160), (shade, shade + 8, shade + 16))
    draw = ImageDraw.Draw(picture)
    draw.ellipse((52, 24, 108, 88), fill=(150, 158, 170))
    draw.ellipse((24, 96, 136, 200), fill=(150, 158, 170))
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=80)
    return out.getvalue()


def drawn_pictures(app: Any) -> None:
    with app.state.server.sessions() as db:
        db.execute(sa.update(Alert).values(probe_jpeg=silhouette(70)))
        db.execute(sa.update(SnapshotImage).values(image_jpeg=silhouette(40)))
        db.execute(sa.update(ReferenceImage).values(face_jpeg=silhouette(40)))
        db.commit()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """What each page has to show: a watchlist of three, a live deployment with an alert, a draft waiting."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENLFR_DATA_DIR", str(tmp_path_factory.mktemp("sweep-data")))
        configure(patch)
        app = build_app()
        add_cast(app)
        add_watchlist(app, people=3)
        olly, ava = login(app, "olly"), login(app, "ava")
        live = olly.post("/api/deployments", json=draft_body(datetime.now(UTC) - timedelta(seconds=5))).json()["id"]
        answer = ava.post(f"/api/deployments/{live}/authorise", json={"justification": JUSTIFICATION})
        assert answer.status_code == 200, answer.text
        draft = olly.post("/api/deployments", json=draft_body(datetime.now(UTC) + timedelta(days=1))).json()["id"]
        alert = add_alert(app, live, "P001")
        add_alert(app, live, "P002", track_id=8)
        # Alerts further on: one waiting for its second check, one closed (the queue's other states).
        confirmed, rejected = add_alert(app, live, "P000", track_id=9), add_alert(app, live, "P002", track_id=10)
        drawn_pictures(app)
        for alert_id, decision in ((confirmed, "confirmed"), (rejected, "not_a_match")):
            decided = olly.post(f"/api/alerts/{alert_id}/decision", json={"decision": decision})
            assert decided.status_code == 200, decided.text
        OWN_KIND[f"/deployments/{draft}"] = "/deployments/draft"  # the authoriser's decision form
        OWN_KIND[f"/alerts/{confirmed}"] = "/alerts/confirmed"  # waiting for the second check
        with LiveServer(app) as server:
            yield Site(app, server, live, draft, alert, confirmed)
        app.state.server.store.close()


def kind_of(path: str) -> str:
    """One name for the pages of one kind: path segments holding a digit are ids."""
    return "/".join("{id}" if re.search(r"\d", part) else part for part in path.split("/")) or "/"


# Detail pages that differ by their state, not only their id: each is a kind of its own (path -> its name).
OWN_KIND: dict[str, str] = {}


def kind_key(path: str) -> str:
    return OWN_KIND.get(path) or kind_of(path)


def page_name(user: str, path: str, width: int, dark: bool = False) -> str:
    shape = kind_key(path).strip("/").replace("{id}", "n") or "home"
    return f"sweep-{ROLES[user]}-{shape}-{width}{'-dark' if dark else ''}"


def detail_pages(site: Site) -> list[str]:
    """Pages a role may or may not see; the ones it may not (403/404) are skipped, not counted as problems."""
    return [
        f"/alerts/{site.alert}",
        f"/alerts/{site.confirmed}",
        f"/deployments/{site.live}",
        f"/deployments/{site.draft}",
        "/watchlists/wanted",
        "/watchlists/wanted/people/P001",
        "/system",
        "/search",
        "/queue",
        "/audit",
        "/users",
        "/settings",
    ]


def links_on(page: Any, base: str, where: str = "body") -> list[str]:
    hrefs = page.eval_on_selector_all(f"{where} a[href]", "links => links.map(a => a.href)")
    found = []
    for href in hrefs:
        parts = urlsplit(href)
        if f"{parts.scheme}://{parts.netloc}" != base or parts.path.startswith(NOT_PAGES):
            continue
        found.append(parts.path)
    return found


def watch_errors(page: Any, sink: list[str]) -> None:
    page.on("pageerror", lambda error: sink.append(f"{page.url}: script error: {error}"))
    page.on(
        "console",
        lambda message: (
            sink.append(f"{page.url}: {message.text}")
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )


def visit(page: Any, url: str) -> int:
    response = page.goto(url)
    page.wait_for_load_state("load")
    return response.status if response is not None else 0


FOCUS_CHECK = """() => {
    const el = document.activeElement;
    if (!el || el === document.body) return null;
    const style = getComputedStyle(el);
    const outlined = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 1;
    const ringed = style.boxShadow && style.boxShadow !== 'none';
    return {control: el.dataset.sweepControl || null, what: describe(el), visible: outlined || ringed};
}"""

# Marks every control a keyboard user must reach (shown, enabled, not taken out of the tab order) with a number.
CONTROLS = """() => {
    window.describe = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
        + (el.getAttribute('href') ? '[href=' + el.getAttribute('href') + ']' : '')
        + (el.name ? '[name=' + el.name + ']' : '')
        + ' "' + (el.textContent || el.value || '').trim().slice(0, 30) + '"';
    const controls = [...document.querySelectorAll('a[href], button, input, select, textarea, summary, [tabindex]')]
        .filter(el => !el.disabled && el.type !== 'hidden' && el.getClientRects().length > 0
                      && getComputedStyle(el).visibility !== 'hidden' && el.tabIndex >= 0);
    controls.forEach((el, i) => { el.dataset.sweepControl = String(i); });
    return controls.map(describe);
}"""


def keyboard_problems(page: Any, name: str) -> list[str]:
    """Tab through the page: each stop shows a focus outline, and every visible control is reached (the first
    MAX_TABS of them on a long page)."""
    problems: list[str] = []
    controls: list[str] = page.evaluate(CONTROLS)
    page.evaluate("() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); }")
    reached: set[str] = set()
    first = None
    # A date or time field takes several presses (one per part) with the focus on the same element.
    for _ in range(3 * min(len(controls), MAX_TABS) + 5):
        page.keyboard.press("Tab")
        stop = page.evaluate(FOCUS_CHECK)
        if stop is None or (first is not None and stop["control"] == first and len(reached) > 1):
            break  # off the page, or round again
        first = first if first is not None else stop["control"]
        if stop["control"] is None or stop["control"] in reached:
            continue
        reached.add(stop["control"])
        if not stop["visible"]:
            problems.append(f"{name}: no visible focus outline on {stop['what']}")
        if len(reached) >= MAX_TABS:
            break
    missed = [what for i, what in enumerate(controls[:MAX_TABS]) if str(i) not in reached]
    if missed and len(reached) < MAX_TABS:
        problems.append(f"{name}: the keyboard never reaches {', '.join(missed[:5])}")
    return problems


CONTRAST = """async () => {
    const result = await axe.run(document, {runOnly: {type: 'rule', values: ['color-contrast']}});
    return result.violations.flatMap(v => v.nodes.slice(0, 3).map(n => n.target.join(' ') + ': ' + n.failureSummary
        .split('\\n').slice(-1)[0]));
}"""


DARK_SCREENSHOTS = ("/queue", "/deployments", "/audit")  # a few for the tour; the others are only checked


def dark_contrast(page: Any, name: str, path: str) -> list[str]:
    if path in DARK_SCREENSHOTS:
        browserkit.screenshot(page, name)
    browserkit.axe_violations(page, impacts=())  # injects axe-core into this document
    return [f"{name}: contrast {where}" for where in page.evaluate(CONTRAST)]


FACE_PICTURES = """() => {
    const found = [];
    const pictured = /\\/api\\/|^data:image|^blob:/;
    const media = 'img, source, image, picture, object, embed, video, input[type=image]';
    for (const el of document.querySelectorAll(media)) {
        for (const attr of ['src', 'srcset', 'href', 'data', 'poster']) {
            const value = el.getAttribute(attr) || '';
            if (value && (pictured.test(value) || el.tagName === 'IMG')) {
                found.push(el.tagName + ' ' + attr + '=' + value);
            }
        }
    }
    for (const el of document.querySelectorAll('*')) {
        for (const pseudo of [null, '::before', '::after']) {
            const image = getComputedStyle(el, pseudo).backgroundImage;
            if (image && image.includes('url(')) found.push(el.tagName + ' background ' + image);
        }
    }
    for (const canvas of document.querySelectorAll('canvas')) found.push('CANVAS ' + (canvas.id || ''));
    return found;
}"""


def walk(browser: Any, site: Site, user: str, width: int, paths: list[str] | None) -> tuple[list[str], list[str]]:
    """Log ``user`` in at ``width`` and check each of ``paths`` (None: find them by following links)."""
    problems: list[str] = []
    base = site.server.url
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    watch_errors(page, problems)
    pictures: list[str] = []
    if ROLES[user] == "auditor":
        page.on(
            "response",
            lambda r: (
                pictures.append(f"{r.url} ({r.headers.get('content-type')})")
                if r.request.resource_type == "image" or (r.headers.get("content-type") or "").startswith("image/")
                else None
            ),
        )
    browserkit.log_in(page, base, user)
    landing = urlsplit(page.url).path
    discovering = paths is None
    queue = [landing, *links_on(page, base, "header")] if discovering else list(paths or [])
    if discovering:
        queue += detail_pages(site)
    seen_kinds: set[str] = set()
    checked: list[str] = []
    menu_checked = False
    while queue and len(checked) < MAX_PAGES:
        path = queue.pop(0)
        if kind_key(path) in seen_kinds:
            continue
        seen_kinds.add(kind_key(path))
        status = visit(page, f"{base}{path}")
        if status >= 500:
            problems.append(f"{ROLES[user]} {path}: answers {status}")
            continue
        if status >= 400:
            continue  # a page this role may not see: not shown to it, not checked
        checked.append(path)
        name = page_name(user, path, width)
        problems += browserkit.check_page(page, name)
        if width == browserkit.WIDE:
            problems += keyboard_problems(page, name)
        if width == browserkit.NARROW and not menu_checked:
            menu_checked = True
            page.click("[data-menu-toggle]")
            problems += browserkit.check_page(page, f"{name}-menu")
        if ROLES[user] == "auditor":
            problems += [f"{name}: face picture? {what}" for what in page.evaluate(FACE_PICTURES)]
        if discovering:
            queue += [link for link in links_on(page, base, "main") if kind_key(link) not in seen_kinds]
    if ROLES[user] == "auditor":
        problems += [f"auditor at {width} px fetched an image: {what}" for what in sorted(set(pictures))]
    context.close()
    return checked, problems


def dark_walk(browser: Any, site: Site, user: str, paths: list[str]) -> list[str]:
    context = browser.new_context(viewport={"width": browserkit.WIDE, "height": 900}, color_scheme="dark")
    page = context.new_page()
    browserkit.log_in(page, site.server.url, user)
    problems: list[str] = []
    for path in paths:
        visit(page, f"{site.server.url}{path}")
        problems += dark_contrast(page, page_name(user, path, browserkit.WIDE, dark=True), path)
    context.close()
    return problems


def outside_pages(browser: Any, site: Site) -> list[str]:
    """The login page (nobody logged in yet) and an error page, at both widths."""
    problems: list[str] = []
    for width in browserkit.WIDTHS:
        context = browser.new_context(viewport={"width": width, "height": 900})
        page = context.new_page()
        watch_errors(page, problems)
        visit(page, f"{site.server.url}/login")
        problems += browserkit.check_page(page, f"sweep-nobody-login-{width}")
        browserkit.log_in(page, site.server.url, "ann")
        assert visit(page, f"{site.server.url}/deployments/999999") == 404
        problems += browserkit.check_page(page, f"sweep-admin-not-found-{width}")
        context.close()
    return problems


def test_every_page_for_every_role_at_both_widths(site: Site, browser: Any) -> None:
    problems = outside_pages(browser, site)
    visited: dict[str, list[str]] = {}
    for user in ROLES:
        paths, found = walk(browser, site, user, browserkit.WIDE, None)
        visited[user] = paths
        problems += found
        problems += walk(browser, site, user, browserkit.NARROW, paths)[1]
        problems += dark_walk(browser, site, user, paths)
    # The walk found the pages each role works with (a role that sees nothing would pass trivially).
    assert {"/deployments", "/records", "/watchlists", "/audit", "/users", "/settings"} <= set(visited["ann"])
    assert {"/queue", "/search", f"/alerts/{site.alert}", "/watchlists/wanted"} <= set(visited["olly"])
    assert {"/audit", "/deployments", "/records", f"/deployments/{site.live}"} <= set(visited["aud"])
    assert not problems, f"{len(problems)} problems on {sum(map(len, visited.values()))} pages:\n" + "\n".join(problems)
