"""The watchlist pages of the console (issue 20, item 3): a page per watchlist listing its people, searchable by id
or name and paged by the server; a page per person; expiry and removal by an administrator through the API's use
cases, each audited; what each role may see (no face picture but the administrator's; the auditor sees no
watchlist at all).

Sixty-one people are written straight into the store (enrolment has its own tests; the pages read the database),
each with a real face picture (scikit-image's astronaut) so the thumbnails are real JPEGs. One server and one
browser for the module.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from PIL import Image

from openlfr.store.models import Person, Watchlist
from tests import browserkit
from tests.serverkit import MODEL_DIMENSION, MODEL_ID, PASSWORD, LiveServer, add_cast, build_app, configure
from tests.storekit import person_row, reference_image_row

pytestmark = pytest.mark.slow

WATCHLIST = "wanted"
FILLER = 60  # W0001..W0060: with the one below, two pages of 50
NAMED = ("K-777", "Harriet Quimby")  # sorts first (K before W)
EXPIRE_REASON = "Arrested on 7 December; no longer sought"


@dataclass(frozen=True)
class Served:
    app: FastAPI
    base: str
    browser: Any


def _face_jpeg(astronaut: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(astronaut[20:220, 150:330])).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _fill(app: FastAPI, face: bytes) -> None:
    rng = np.random.default_rng(20)
    now = datetime.now(UTC)
    with app.state.server.sessions() as db:
        watchlist = Watchlist(name=WATCHLIST, purpose="Wanted for violent offences", created_by="ann", created_at=now)
        people = [(f"W{n:04d}", f"Filler Person {n:02d}") for n in range(1, FILLER + 1)]
        for number, (reference, name) in enumerate([NAMED, *people]):
            person = person_row(
                reference,
                display_name=name,
                reason=f"wanted for offence {number}",
                expires_at=now + timedelta(days=30),
                watchlist=watchlist,
            )
            vector = rng.normal(size=MODEL_DIMENSION).astype(np.float32)
            image = reference_image_row(vector / np.linalg.norm(vector), MODEL_ID, f"{number:064d}", face_jpeg=face)
            person.images.append(image)
            db.add(person)
        db.commit()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Iterator[Served]:
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("watchlist-pages")
        patch.setenv("OPENLFR_DATA_DIR", str(folder / "openlfr-data"))
        patch.delenv("OPENLFR_DATABASE_URL", raising=False)
        configure(patch)
        app = build_app()
        try:
            add_cast(app, "ann", "olly", "ava", "aud")
            _fill(app, _face_jpeg(astronaut))
            with LiveServer(app) as server, browserkit.chromium() as browser:
                yield Served(app, server.url, browser)
        finally:
            app.state.server.store.close()


@contextmanager
def _http(served: Served, username: str) -> Iterator[httpx.Client]:
    """A client of the live server logged in as ``username`` through the login form."""
    with httpx.Client(base_url=served.base, follow_redirects=False, timeout=30) as client:
        page = client.get("/login").text
        token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        answer = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token})
        assert answer.status_code == 303, answer.text
        yield client


def _audit(served: Served, *actions: str) -> list[dict[str, Any]]:
    """The audit entries of ``actions``, oldest first, as the audit API answers them to an administrator."""
    with _http(served, "ann") as ann:
        entries = ann.get("/api/audit", params={"limit": 1000}).json()
    return [e for e in reversed(entries) if e["action"] in actions]


def _rows(page: Any) -> list[str]:
    return page.locator("tr[data-person]").evaluate_all("rows => rows.map(r => r.dataset.person)")


def _open(served: Served, username: str, width: int = browserkit.WIDE) -> Any:
    page = browserkit.new_page(served.browser, width)
    browserkit.log_in(page, served.base, username)
    return page


def test_an_admin_finds_people_by_id_and_by_name_and_pages_through_the_list(served: Served) -> None:
    page = _open(served, "ann")
    page.goto(f"{served.base}/watchlists")
    page.get_by_role("link", name=WATCHLIST, exact=True).click()
    page.wait_for_url(f"{served.base}/watchlists/{WATCHLIST}")
    assert page.inner_text("[data-testid=range]") == "1–50 of 61"
    rows = _rows(page)
    assert rows[:2] == ["K-777", "W0001"] and len(rows) == 50
    first = page.locator("tr[data-person='K-777']")
    assert "Harriet Quimby" in first.inner_text() and "wanted for offence 0" in first.inner_text()
    # Each row's thumbnail is the person's face picture, small, from the API.
    page.wait_for_function("() => [...document.querySelectorAll('img[data-testid=thumb]')].every(i => i.complete)")
    sizes = page.locator("img[data-testid=thumb]").evaluate_all(
        "all => all.map(i => [i.naturalWidth, i.naturalHeight])"
    )
    assert len(sizes) == 50 and all(0 < max(w, h) <= 96 for w, h in sizes), sizes[:3]

    page.get_by_role("link", name="Next").click()
    page.wait_for_url("**offset=50**")
    assert page.inner_text("[data-testid=range]") == "51–61 of 61"
    assert _rows(page) == [f"W{n:04d}" for n in range(50, 61)]
    assert page.get_by_role("link", name="Next").count() == 0
    page.get_by_role("link", name="Previous").click()
    page.wait_for_url("**offset=0**")
    assert _rows(page)[0] == "K-777"

    for query in ("K-777", "quimby"):  # by id, and by part of the name in any case
        page.fill("input[name=q]", query)
        page.locator("form[role=search] button[type=submit]").click()
        page.wait_for_url(f"**q={query}**")
        assert _rows(page) == ["K-777"], query
        assert page.inner_text("[data-testid=range]") == "1–1 of 1"
    page.fill("input[name=q]", "nobody-like-this")
    page.locator("form[role=search] button[type=submit]").click()
    page.wait_for_url("**q=nobody-like-this**")
    assert _rows(page) == [] and "Nobody" in page.inner_text("main")
    page.context.close()

    # Each look at the list, and each search, is audited with who was shown; each face picture seen too.
    views = [e for e in _audit(served, "watchlist.people_viewed") if e["actor"] == "ann"]
    assert [(e["target"], e["details"]["q"], e["details"]["total"]) for e in views][-6:] == [
        ("watchlist:wanted", "", 61),
        ("watchlist:wanted", "", 61),
        ("watchlist:wanted", "", 61),
        ("watchlist:wanted", "K-777", 1),
        ("watchlist:wanted", "quimby", 1),
        ("watchlist:wanted", "nobody-like-this", 0),
    ]
    assert views[-6]["details"]["shown"][:2] == ["K-777", "W0001"] and len(views[-6]["details"]["shown"]) == 50
    assert views[-5]["details"]["first"] == 51
    pictures = _audit(served, "watchlist.photo_viewed")
    assert {e["target"] for e in pictures} >= {"watchlist:wanted/person:K-777", "watchlist:wanted/person:W0060"}


def test_an_admin_expires_and_removes_a_listing_each_audited(served: Served) -> None:
    page = _open(served, "ann")
    page.goto(f"{served.base}/watchlists/{WATCHLIST}/people/W0007")
    assert "Filler Person 07" in page.inner_text("main")
    page.wait_for_function("() => document.querySelector('img[data-testid=photo]').naturalWidth > 0")
    # Expire now (no time given), with a reason.
    form = page.locator("form[data-testid=expire]")
    form.locator("[name=reason]").fill(EXPIRE_REASON)
    form.locator("button[type=submit]").click()
    page.wait_for_function("() => document.querySelector('[data-testid=status]').textContent.includes('expired')")
    (expired,) = [e for e in _audit(served, "watchlist.expire") if e["target"].endswith("/person:W0007")]
    assert (expired["actor"], expired["role"], expired["details"]["reason"]) == ("ann", "admin", EXPIRE_REASON)
    assert expired["details"]["people"] == 1
    with served.app.state.server.sessions() as db:
        person = db.query(Person).filter_by(reference_id="W0007").one()
        assert person.expires_at <= datetime.now(UTC)

    # A later time than the listing's end is refused: expiry is only ever brought forward.
    later = (datetime.now(UTC) + timedelta(days=90)).replace(microsecond=0)
    with _http(served, "ann") as ann:
        csrf = ann.get("/api/me").json()["csrf_token"]
        body = {"reason": EXPIRE_REASON, "at": later.isoformat()}
        refused = ann.post(
            f"/api/watchlists/{WATCHLIST}/people/W0008/expire", json=body, headers={"X-CSRF-Token": csrf}
        )
        assert refused.status_code == 400 and "brought forward" in refused.json()["detail"], refused.text

    # Removal asks first; the person is gone once confirmed.
    page.get_by_role("link", name="Remove from the watchlist").click()
    page.wait_for_url("**remove=1**")
    assert "cannot be undone" in page.inner_text("[data-testid=confirm]")
    with served.app.state.server.sessions() as db:
        assert db.query(Person).filter_by(reference_id="W0007").count() == 1  # asking removed nothing
    page.locator("[data-testid=confirm] button[type=submit]").click()
    page.wait_for_url(f"{served.base}/watchlists/{WATCHLIST}")
    page.fill("input[name=q]", "W0007")
    page.locator("form[role=search] button[type=submit]").click()
    page.wait_for_url("**q=W0007**")
    assert _rows(page) == []
    (removed,) = [e for e in _audit(served, "watchlist.remove_person") if e["target"].endswith("/person:W0007")]
    assert (removed["actor"], removed["details"]) == ("ann", {"images": 1})
    page.context.close()


def test_an_operator_sees_the_people_but_no_face_picture_and_no_admin_action(served: Served) -> None:
    page = _open(served, "olly")
    page.goto(f"{served.base}/watchlists/{WATCHLIST}")
    assert re.fullmatch(r"1–50 of 6[01]", page.inner_text("[data-testid=range]"))  # 60 once the removal test ran
    assert "K-777" in _rows(page)
    assert page.locator("img").count() == 0
    page.goto(f"{served.base}/watchlists/{WATCHLIST}/people/K-777")
    main = page.inner_text("main")
    assert "Harriet Quimby" in main and "wanted for offence 0" in main
    assert page.locator("img").count() == 0
    assert page.locator("form[data-testid=expire]").count() == 0
    assert page.get_by_role("link", name="Remove from the watchlist").count() == 0
    page.context.close()
    with served.app.state.server.sessions() as db:
        image = db.query(Person).filter_by(reference_id="K-777").one().images[0].id
    picture = f"/api/watchlists/{WATCHLIST}/people/K-777/photos/{image}.jpg"
    with _http(served, "ann") as ann:
        shown = ann.get(picture)
        assert shown.status_code == 200 and shown.headers["content-type"] == "image/jpeg"
        assert shown.headers["cache-control"] == "no-store"
        assert max(Image.open(io.BytesIO(shown.content)).size) <= 96
    for who in ("olly", "ava", "aud"):
        with _http(served, who) as client:
            assert client.get(picture).status_code == 403, who
    (view,) = [e for e in _audit(served, "watchlist.person_viewed") if e["actor"] == "olly"]
    assert view["target"] == "watchlist:wanted/person:K-777"


def test_the_auditor_sees_no_watchlist_and_no_face_picture(served: Served) -> None:
    page = _open(served, "aud")
    for path in (f"/watchlists/{WATCHLIST}", f"/watchlists/{WATCHLIST}/people/K-777"):
        answer = page.goto(f"{served.base}{path}")
        assert answer is not None and answer.status == 403, path
        assert page.locator("img").count() == 0
        assert "K-777" not in page.content() and "Quimby" not in page.content()
    page.context.close()
    with _http(served, "aud") as aud:
        assert aud.get(f"/api/watchlists/{WATCHLIST}/people").status_code == 403


def test_the_pages_pass_axe_and_fit_a_narrow_screen_for_each_role_that_sees_them(served: Served) -> None:
    problems: list[str] = []
    person = f"/watchlists/{WATCHLIST}/people/K-777"
    pages = [("watchlists", "/watchlists"), ("watchlist", f"/watchlists/{WATCHLIST}"), ("person", person)]
    for who in ("ann", "ava", "olly"):
        page = _open(served, who)
        shown = [*pages, ("person-remove", f"{person}?remove=1")] if who == "ann" else pages
        for width in browserkit.WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            for name, path in shown:
                answer = page.goto(f"{served.base}{path}")
                assert answer is not None and answer.status == 200, (who, path)
                page.wait_for_function("() => [...document.images].every(i => i.complete)")
                problems += browserkit.check_page(page, f"{name}-{who}-{width}")
        page.context.close()
    assert problems == []


def test_the_api_answers_the_same_reads_audited_and_brings_an_expiry_forward_to_a_later_moment(served: Served) -> None:
    with _http(served, "ava") as ava:
        page = ava.get(f"/api/watchlists/{WATCHLIST}/people", params={"q": "QUIMBY", "limit": 5})
        assert page.status_code == 200, page.text
        body = page.json()
        assert (body["total"], body["q"], [p["person"] for p in body["people"]]) == (1, "QUIMBY", ["K-777"])
        assert body["people"][0]["photos"]["photos"] == 1 and body["people"][0]["active"] is True
        person = ava.get(f"/api/watchlists/{WATCHLIST}/people/K-777").json()
        assert person["name"] == "Harriet Quimby" and [i["source"] for i in person["images"]] == ["still.jpg"]
        assert ava.get(f"/api/watchlists/{WATCHLIST}/people/nobody").status_code == 404
        assert ava.post(f"/api/watchlists/{WATCHLIST}/people/K-777/expire", json={"reason": "x"}).status_code == 403
    views = [e for e in _audit(served, "watchlist.people_viewed", "watchlist.person_viewed") if e["actor"] == "ava"]
    assert [(e["action"], e["details"]) for e in views][-2:] == [
        ("watchlist.people_viewed", {"q": "QUIMBY", "first": 1, "shown": ["K-777"], "total": 1, "photos": False}),
        ("watchlist.person_viewed", {"photos": False}),
    ]
    # An expiry a week ahead, sooner than the listing's end: the person is still searched until then.
    week = (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0)
    with _http(served, "ann") as ann:
        csrf = ann.get("/api/me").json()["csrf_token"]
        body = {"reason": EXPIRE_REASON, "at": week.isoformat()}
        answer = ann.post(f"/api/watchlists/{WATCHLIST}/people/W0009/expire", json=body, headers={"X-CSRF-Token": csrf})
        assert answer.status_code == 200, answer.text
        assert datetime.fromisoformat(answer.json()["expires_at"]) == week
        listed = ann.get(f"/api/watchlists/{WATCHLIST}/people/W0009").json()
        assert listed["active"] is True and datetime.fromisoformat(listed["expires_at"]) == week
    (entry,) = [e for e in _audit(served, "watchlist.expire") if e["target"].endswith("/person:W0009")]
    assert entry["details"] == {"at": week.isoformat().replace("+00:00", "Z"), "people": 1, "reason": EXPIRE_REASON}


def test_the_people_page_query_finds_by_part_of_id_or_name_on_both_databases(store_url: str) -> None:
    """The search is a 'contains' in any case, its ``%``, ``_`` and ``\\`` taken literally; a photo embedded under
    two models counts once, and the weakest measure is over the person's photos."""
    from openlfr.settings import get_settings
    from openlfr.store.db import open_store
    from openlfr.store.watchlist_pages import people_page

    now = datetime.now(UTC)
    vector = np.ones(MODEL_DIMENSION, dtype=np.float32) / np.sqrt(MODEL_DIMENSION)
    store = open_store(get_settings())
    try:
        with store.session() as db:
            watchlist = Watchlist(name="w", purpose="", created_by="t", created_at=now)
            for reference, name in [("P_1", "Zoë 100%"), ("Q1", "Back\\slash"), ("R-3", "Carol Ann")]:
                person = person_row(reference, display_name=name, watchlist=watchlist)
                db.add(person)
            db.flush()
            carol = db.query(Person).filter_by(reference_id="R-3").one()
            for sha, model, eyes in [("1", MODEL_ID, 60.0), ("1", "other-model", 60.0), ("2", MODEL_ID, 35.0)]:
                carol.images.append(reference_image_row(vector, model, sha * 64, inter_eye_px=eyes))
            watchlist_id = watchlist.id
        with store.session() as db:

            def found(query: str, offset: int = 0, limit: int = 50) -> list[str]:
                return [p.reference_id for p in people_page(db, watchlist_id, query, offset, limit).people]

            assert found("") == ["P_1", "Q1", "R-3"]
            assert found("p_") == ["P_1"]  # not "any one character"
            assert found("%") == ["P_1"]
            assert found("\\") == ["Q1"]
            assert found("zoë") == ["P_1"] and found("CAROL") == ["R-3"]
            assert found("carol ann") == ["R-3"]
            assert found("", offset=1, limit=1) == ["Q1"]
            page = people_page(db, watchlist_id, "r-3", 0, 50)
            assert page.total == 1
            photos = page.people[0].photos
            assert photos is not None and photos.photos == 2 and photos.weakest.inter_eye_px == 35.0
            assert people_page(db, watchlist_id, "", 0, 1).total == 3
        with store.session() as db:  # letters beyond ASCII, in any case (SQLite's own lower() folds ASCII only)
            accents = Watchlist(name="accents", purpose="", created_by="t", created_at=now)
            db.add(person_row("E-4", display_name="Émile Øster", watchlist=accents))
            db.flush()
            for query in ("émile", "ÉMILE", "øster", "ØSTER"):
                assert [p.reference_id for p in people_page(db, accents.id, query, 0, 50).people] == ["E-4"], query
    finally:
        store.close()


def test_a_person_whose_id_holds_a_slash_is_read_expired_and_removed(served: Served, astronaut: np.ndarray) -> None:
    """A PNC id reads 2001/0123456A: its "/" (sent as %2F) is part of the id, not a step of the path."""
    from openlfr.store.models import ReferenceImage

    pnc = "2001/0123456A"
    with served.app.state.server.sessions() as db:
        watchlist = Watchlist(name="pnc", purpose="By PNC id", created_by="ann", created_at=datetime.now(UTC))
        person = person_row(pnc, display_name="Slash Person", watchlist=watchlist)
        vector = np.ones(MODEL_DIMENSION, dtype=np.float32) / np.sqrt(MODEL_DIMENSION)
        person.images.append(reference_image_row(vector, MODEL_ID, "9" * 64, face_jpeg=_face_jpeg(astronaut)))
        db.add(person)
        db.commit()
        (image_id,) = db.query(ReferenceImage.id).filter(ReferenceImage.person_id == person.id).one()
    at = "/api/watchlists/pnc/people/2001%2F0123456A"
    with _http(served, "ann") as ann:
        csrf = {"X-CSRF-Token": ann.get("/api/me").json()["csrf_token"]}
        assert ann.get(at).json()["person"] == pnc
        assert pnc in ann.get("/watchlists/pnc/people/2001%2F0123456A").text
        photo = ann.get(f"{at}/photos/{image_id}.jpg")
        assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
        expired = ann.post(f"{at}/expire", json={"reason": EXPIRE_REASON}, headers=csrf)
        assert expired.status_code == 200 and expired.json()["person"] == pnc, expired.text
        assert ann.delete(at, headers=csrf).json() == {"removed_images": 1}
        assert ann.get(at).status_code == 404
