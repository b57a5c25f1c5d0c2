"""The console's face picker on photo search (issue 20, item 7) and the authoriser's home.

A photo of three faces is searched without choosing one: the API answers the boxes of the faces it found, and the
page shows the photo with one button over each face ("Face 1 of 3" ...), reachable by keyboard; choosing the second
runs the search for that face. An authoriser who logs in lands on the drafts waiting for their decision.
One server and one browser for the module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from PIL import Image

from tests import browserkit
from tests.serverkit import (
    JUSTIFICATION,
    LiveServer,
    add_cast,
    add_watchlist,
    build_app,
    configure,
    draft_body,
    enrol_upload,
    login,
)

pytestmark = pytest.mark.slow

REASON = "Suspect photo from the incident report, checking the watchlist"


@dataclass(frozen=True)
class Served:
    app: FastAPI
    base: str
    photos: dict[str, Path]
    browser: Any


def _photos(folder: Path, astronaut: np.ndarray) -> dict[str, Path]:
    head = np.ascontiguousarray(astronaut[0:300, 80:380])
    Image.fromarray(head).save(folder / "enrolled.png")
    # Three faces side by side: her, her mirrored, her again smaller (so the boxes differ in size and place).
    small = np.asarray(Image.fromarray(head).resize((220, 220), Image.Resampling.BICUBIC))
    canvas = np.full((300, 820, 3), 235, dtype=np.uint8)
    canvas[:, 0:300] = head
    canvas[:, 300:600] = head[:, ::-1]
    canvas[40:260, 600:820] = small
    Image.fromarray(canvas).save(folder / "three.png")
    return {p.stem: p for p in folder.iterdir()}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Iterator[Served]:
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("picker")
        patch.setenv("OPENLFR_DATA_DIR", str(folder / "openlfr-data"))
        patch.delenv("OPENLFR_DATABASE_URL", raising=False)
        configure(patch)
        photos = _photos(folder, astronaut)
        app = build_app()
        try:
            add_cast(app, "ann", "olly", "ava", "abe", "aud")
            ann = login(app, "ann")
            assert ann.post("/api/watchlists", json={"name": "space", "purpose": "tests"}).status_code == 201
            enrol_upload(ann, "space", "A-1", "Eileen Collins", [photos["enrolled"]])
            add_watchlist(app, "wanted")
            with LiveServer(app) as server, browserkit.chromium() as browser:
                yield Served(app, server.url, photos, browser)
        finally:
            app.state.server.store.close()


def test_the_api_answers_the_boxes_of_the_faces_to_choose_from(served: Served) -> None:
    olly = login(served.app, "olly")
    photo = served.photos["three"]
    form = {"data": {"watchlist": "space", "reason": REASON}, "files": {"image": (photo.name, photo.read_bytes())}}
    answer = olly.post("/api/search", **form)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert "3 faces in the photo" in body["detail"]
    assert body["photo"] == {"width": 820, "height": 300}
    assert [face["face"] for face in body["faces"]] == [1, 2, 3]
    lefts = [face["box"][0] for face in body["faces"]]
    assert lefts == sorted(lefts) and lefts[0] < 300 <= lefts[1] < 600 <= lefts[2]  # numbered from the left
    for face in body["faces"]:
        left, top, right, bottom = face["box"]
        assert 0 <= left < right <= 820 and 0 <= top < bottom <= 300


def test_the_picker_shows_a_button_per_face_and_searches_the_one_chosen(served: Served) -> None:
    problems: list[str] = []
    for width in browserkit.WIDTHS:
        page = browserkit.new_page(served.browser, width)
        browserkit.log_in(page, served.base, "olly")
        page.goto(f"{served.base}/search")
        form = page.locator("form#photo-search")
        assert form.locator("input[name=face]").count() == 0 or form.locator("input[name=face]").is_hidden()
        form.locator("textarea[name=reason]").fill(REASON)
        form.locator("input[type=file]").set_input_files(str(served.photos["three"]))
        form.locator("button[type=submit]").click()
        picker = page.locator("#face-picker")
        picker.wait_for(state="visible", timeout=30_000)
        buttons = picker.locator("button[data-face]")
        assert buttons.count() == 3
        labels = [buttons.nth(i).get_attribute("aria-label") for i in range(3)]
        assert labels == ["Face 1 of 3", "Face 2 of 3", "Face 3 of 3"]
        assert "--face" not in page.inner_text("main")
        assert page.locator("#search-results").is_hidden()
        # Each button lies over its face: the second is right of the first, the third right of the second.
        boxes = [buttons.nth(i).bounding_box() for i in range(3)]
        assert all(b is not None and b["width"] > 10 for b in boxes)
        assert boxes[0]["x"] < boxes[1]["x"] < boxes[2]["x"]  # type: ignore[index]
        page.wait_for_function("() => document.querySelector('#face-picker img').naturalWidth > 0")
        problems += browserkit.check_page(page, f"search-picker-{width}")
        if width == browserkit.WIDE:
            buttons.nth(1).click()
        else:  # by keyboard: Tab from the search button reaches the faces in order; Enter on the second searches
            form.locator("button[type=submit]").focus()
            focused = ""
            for _ in range(6):
                page.keyboard.press("Tab")
                focused = page.evaluate("document.activeElement.getAttribute('aria-label') || ''")
                if focused.startswith("Face"):
                    break
            assert focused == "Face 1 of 3"
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Face 2 of 3"
            page.keyboard.press("Enter")
        page.wait_for_selector("#search-candidates tr[data-person='A-1']", timeout=30_000)
        summary = page.inner_text("[data-testid=search-summary]")
        assert "with face 2 of 3" in summary, summary
        assert buttons.nth(1).get_attribute("aria-pressed") == "true"  # which face the results are for
        assert buttons.nth(0).get_attribute("aria-pressed") == "false"
        problems += browserkit.check_page(page, f"search-picked-{width}")
        if width == browserkit.NARROW:  # the picker's colours are the console's: dark mode too
            page.emulate_media(color_scheme="dark")
            problems += browserkit.check_page(page, f"search-picked-{width}-dark")
        page.context.close()
    assert problems == []


def test_an_authoriser_lands_on_the_drafts_waiting_for_authorisation(served: Served) -> None:
    olly, abe = login(served.app, "olly"), login(served.app, "abe")
    start = datetime.now(UTC) + timedelta(days=2)
    waiting = olly.post("/api/deployments", json=draft_body(start, name="Waiting for you")).json()
    decided = olly.post("/api/deployments", json=draft_body(start, name="Already authorised")).json()
    done = abe.post(f"/api/deployments/{decided['id']}/authorise", json={"justification": JUSTIFICATION})
    assert done.status_code == 200, done.text
    problems: list[str] = []
    for width in browserkit.WIDTHS:
        page = browserkit.new_page(served.browser, width)
        browserkit.log_in(page, served.base, "ava")
        assert page.url == f"{served.base}/deployments?state=draft", page.url
        main = page.inner_text("main")
        assert "Waiting for you" in main and "Already authorised" not in main  # the drafts only
        problems += browserkit.check_page(page, f"authoriser-home-{width}")
        page.goto(f"{served.base}/")
        assert page.url == f"{served.base}/deployments?state=draft", page.url
        page.context.close()
    # The operator's home is unchanged: the alert queue.
    page = browserkit.new_page(served.browser)
    browserkit.log_in(page, served.base, "olly")
    assert page.url == f"{served.base}/queue"
    page.context.close()
    assert waiting["id"] != decided["id"]
    assert problems == []
