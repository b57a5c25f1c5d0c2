"""The console's administration pages: accounts, re-embedding a watchlist, the audit anchor, and the anchor of a
deployment's end on its published record.

The fast tests drive the pages as ``static/console.js`` does (the forms' own targets, the page's own CSRF token)
and read the audit log back; the browser test (Debian's chromium) has an administrator create an account,
change its role and disable it (it can then not log in) and re-embed a watchlist enrolled under another model.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from openlfr.governance.roles import Role
from openlfr.settings import Settings
from openlfr.store.governance_models import AuditEntry, Deployment, User
from openlfr.store.models import Person, ReferenceImage, Watchlist
from openlfr.vision.engine import model_id_for, second_model_id
from tests.conftest import require_data
from tests.serverkit import (
    JUSTIFICATION,
    PASSWORD,
    Client,
    LiveServer,
    add_user,
    add_watchlist,
    build_app,
    configure,
    draft_body,
    enrol_upload,
    login,
    login_form_token,
)
from tests.storekit import person_row, reference_image_row
from tests.test_console_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, log_in, new_page

OTHER_MODEL = model_id_for(Settings(embedder="dlib"))
NEW_PASSWORD = "another-long-enough-password"


def _app_with_accounts(monkeypatch: pytest.MonkeyPatch) -> Iterator[FastAPI]:
    configure(monkeypatch)
    application = build_app()
    for name, role in [("ann", Role.ADMIN), ("olly", Role.OPERATOR), ("ava", Role.AUTHORISER), ("aud", Role.AUDITOR)]:
        add_user(application, name, role)
    yield application
    application.state.server.store.close()


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Iterator[FastAPI]:
    yield from _app_with_accounts(monkeypatch)


@pytest.fixture
def app_on_both(monkeypatch: pytest.MonkeyPatch, store_url: str) -> Iterator[FastAPI]:
    """On SQLite and on a real PostgreSQL (``store_url``): the anchor is found by comparing times in the store."""
    yield from _app_with_accounts(monkeypatch)


def entries(app: FastAPI, *actions: str) -> list[AuditEntry]:
    with app.state.server.sessions() as db:
        query = sa.select(AuditEntry).order_by(AuditEntry.seq)
        if actions:
            query = query.where(AuditEntry.action.in_(actions))
        return list(db.scalars(query))


def page_csrf(page: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
    assert match, page
    return match.group(1)


def form_targets(page: str, username: str) -> list[str]:
    """The API paths of the forms and buttons on the row of ``username`` of the users page."""
    row = re.search(rf'<tr data-user="{re.escape(username)}">(.*?)</tr>', page, re.S)
    assert row, page
    return re.findall(r'data-api="([^"]+)"', row.group(1))


def refused_login(app: FastAPI, username: str, password: str = PASSWORD) -> bool:
    http = TestClient(app, follow_redirects=False)
    data = {"username": username, "password": password, "csrf_token": login_form_token(http)}
    return http.post("/login", data=data).status_code == 401


def test_account_forms_reach_the_account_use_cases_and_each_change_is_audited(app: FastAPI) -> None:
    ann = login(app, "ann")
    page = ann.get("/users").text
    csrf = page_csrf(page)
    assert csrf == ann.csrf  # the page carries the session's own token, which console.js sends back

    def send(path: str, body: dict[str, Any] | None = None) -> Any:
        return ann.http.post(path, json=body or {}, headers={"X-CSRF-Token": csrf})

    created = send("/api/users", {"username": "carl", "display_name": "Carl", "role": "operator", "password": PASSWORD})
    assert created.status_code == 201, created.text
    # What the service refuses comes back as one sentence, shown in the form's error line.
    weak = send("/api/users", {"username": "dave", "role": "operator", "password": "short"})
    assert weak.status_code == 400 and weak.json()["detail"] == "a password needs at least 12 characters"
    twice = send("/api/users", {"username": "carl", "role": "auditor", "password": PASSWORD})
    assert twice.status_code == 400 and twice.json()["detail"] == "a user named 'carl' already exists"
    bad_name = send("/api/users", {"username": "Carl Jones", "role": "auditor", "password": PASSWORD})
    assert bad_name.status_code == 400 and "lower-case letters" in bad_name.json()["detail"]

    page = ann.get("/users").text
    carl_id = created.json()["id"]
    role, password, disable = form_targets(page, "carl")
    assert (role, password, disable) == (
        f"/api/users/{carl_id}/role",
        f"/api/users/{carl_id}/password",
        f"/api/users/{carl_id}/disable",
    )
    assert form_targets(page, "ann") == []  # no form on one's own account
    ann_id = next(u["id"] for u in ann.get("/api/users").json() if u["username"] == "ann")
    myself = send(f"/api/users/{ann_id}/disable")
    assert myself.status_code == 400 and myself.json()["detail"] == "you cannot disable your own account"

    carl = login(app, "carl")
    assert send(role, {"role": "auditor"}).json()["role"] == "auditor"
    assert carl.get("/api/me").status_code == 401  # the new role ended the session
    assert send(password, {"password": "short"}).json()["detail"] == "a password needs at least 12 characters"
    assert send(password, {"password": NEW_PASSWORD}).status_code == 200
    assert refused_login(app, "carl") and not refused_login(app, "carl", NEW_PASSWORD)
    assert send(disable).json()["active"] is False
    assert refused_login(app, "carl", NEW_PASSWORD)
    page = ann.get("/users").text
    assert form_targets(page, "carl")[2] == f"/api/users/{carl_id}/enable"
    assert send(f"/api/users/{carl_id}/enable").json()["active"] is True
    assert not refused_login(app, "carl", NEW_PASSWORD)

    changes = entries(app, "user.create", "user.role", "user.password_reset", "user.disable", "user.enable")
    facts = [(e.actor, e.role, e.action, e.target, e.details) for e in changes if e.target == "user:carl"]
    assert facts == [
        ("ann", "admin", "user.create", "user:carl", {"role": "operator"}),
        ("ann", "admin", "user.role", "user:carl", {"from": "operator", "to": "auditor", "sessions_ended": 1}),
        ("ann", "admin", "user.password_reset", "user:carl", {"sessions_ended": 0}),
        ("ann", "admin", "user.disable", "user:carl", {"sessions_ended": 1}),
        ("ann", "admin", "user.enable", "user:carl", {}),
    ]
    assert [e.target for e in changes] == ["user:carl"] * 5  # the refused ones changed nothing
    # Only the administrator reaches the page.
    for name in ("olly", "ava", "aud"):
        assert login(app, name).get("/users").status_code == 403


def test_the_anchor_page_shows_the_head_and_checks_a_kept_anchor(app_on_both: FastAPI) -> None:
    app = app_on_both
    login(app, "olly")
    aud = login(app, "aud")
    page = aud.get("/audit/anchor")
    assert page.status_code == 200
    with app.state.server.sessions() as db:
        head = db.execute(sa.text("SELECT seq, hash FROM audit_head")).one()
    shown = re.search(r'<code data-testid="anchor">([^<]+)</code>', page.text)
    assert shown and shown.group(1) == f"{head[0]}:{head[1]}"
    assert "audit log intact" in page.text
    assert not entries(app, "audit.verify")  # looking is not a check

    kept = shown.group(1)
    checked = aud.get("/audit/anchor", params={"anchor": kept})
    assert f"anchor {kept} holds" in checked.text
    (entry,) = entries(app, "audit.verify")
    assert (entry.actor, entry.role, entry.target) == ("aud", "auditor", "audit_log")
    assert entry.details == {"ok": True, "entries": head[0], "anchor": kept}

    wrong = aud.get("/audit/anchor", params={"anchor": "12:nothex"})
    assert wrong.status_code == 400 and "an anchor is SEQ:HASH with HASH 64 lower-case hex digits" in wrong.text

    # Entries cut off the end and the head set back to match: the chain alone cannot tell, the anchor can.
    with app.state.server.store.engine.begin() as c:
        c.execute(sa.text("DELETE FROM audit_log WHERE seq >= :s"), {"s": head[0]})
        prev = c.execute(sa.text("SELECT hash FROM audit_log WHERE seq = :s"), {"s": head[0] - 1}).scalar_one()
        c.execute(sa.text("UPDATE audit_head SET seq = :s, hash = :h"), {"s": head[0] - 1, "h": prev})
    cut = aud.get("/audit/anchor", params={"anchor": kept})
    verdicts = re.findall(r'data-testid="(?:verdict|anchor-verdict)">([^<]+)<', cut.text)
    assert verdicts == [
        f"audit log intact: {head[0] - 1} entries, chain and head verified",
        f"audit log broken at entry {head[0]}: removed (the anchored entry is gone: the log was cut back)",
    ]
    assert login(app, "ann").get("/audit/anchor").status_code == 200
    for name in ("olly", "ava"):
        assert login(app, name).get("/audit/anchor").status_code == 403


def _authorised(app: FastAPI, start: datetime, hours: float) -> int:
    olly, ava = login(app, "olly"), login(app, "ava")
    drafted = olly.post("/api/deployments", json=draft_body(start, hours=hours))
    assert drafted.status_code == 201, drafted.text
    deployment_id = int(drafted.json()["id"])
    authorised = ava.post(f"/api/deployments/{deployment_id}/authorise", json={"justification": JUSTIFICATION})
    assert authorised.status_code == 200, authorised.text
    return deployment_id


def test_the_record_carries_the_audit_anchor_of_the_deployments_end(app_on_both: FastAPI) -> None:
    app = app_on_both
    add_watchlist(app)
    aud, olly = login(app, "aud"), login(app, "olly")
    deployment_id = _authorised(app, datetime.now(UTC) - timedelta(seconds=1), hours=2)
    assert olly.get(f"/api/deployments/{deployment_id}/record").json()["audit_anchor"] == ""  # live: no end yet
    assert "given once the deployment has ended" in aud.get(f"/deployments/{deployment_id}").text

    assert olly.post(f"/api/deployments/{deployment_id}/end").status_code == 200
    (ended,) = entries(app, "deployment.end")
    before = next(e for e in entries(app) if e.seq == ended.seq - 1)
    # The head as the deployment ended: the last entry written before its end (the end's own entry came after).
    expected = f"{before.seq}:{before.hash}"
    record = olly.get(f"/api/deployments/{deployment_id}/record").json()
    assert record["audit_anchor"] == expected

    # Later entries do not move it: the CSV (an audited export), the period's records, the pages all carry it.
    csv_text = aud.get(f"/api/deployments/{deployment_id}/record.csv").text
    header, row = csv_text.splitlines()
    assert header.split(",")[-1] == "audit_anchor" and row.endswith(f",{expected}")
    assert [r["audit_anchor"] for r in olly.get("/api/records").json()] == [expected]
    page = aud.get(f"/deployments/{deployment_id}").text
    assert f'<code data-testid="audit-anchor">{expected}</code>' in page
    assert f'href="/audit/anchor?anchor={expected.replace(":", "%3A")}"' in page  # verify, for auditor and admin
    assert f'data-anchor="{expected}"' in aud.get("/records").text
    assert "/audit/anchor?anchor=" not in olly.get(f"/deployments/{deployment_id}").text

    checked = aud.get("/audit/anchor", params={"anchor": expected}).text
    assert f"anchor {expected} holds" in html.unescape(checked)

    # A window that simply runs out: the head as of its scheduled end, whatever is written afterwards.
    short = _authorised(app, datetime.now(UTC) - timedelta(seconds=1), hours=4 / 3600)
    with app.state.server.sessions() as db:
        ends_at = db.get_one(Deployment, short).ends_at
    time.sleep(max(0.0, (ends_at - datetime.now(UTC)).total_seconds()) + 0.2)
    olly.get("/api/records.csv")  # an entry after the end
    within = [e for e in entries(app) if e.at <= ends_at]
    record = olly.get(f"/api/deployments/{short}/record").json()
    assert record["status"] == "ended" and record["audit_anchor"] == f"{within[-1].seq}:{within[-1].hash}"
    assert within[-1].seq < entries(app)[-1].seq

    # Cancelled before it started: the head as it was cancelled.
    scheduled = _authorised(app, datetime.now(UTC) + timedelta(hours=1), hours=1)
    cancelled = login(app, "ann").post(f"/api/deployments/{scheduled}/cancel", json={"reason": "event called off"})
    assert cancelled.status_code == 200, cancelled.text
    (cancel,) = entries(app, "deployment.cancel")
    before = next(e for e in entries(app) if e.seq == cancel.seq - 1)
    assert olly.get(f"/api/deployments/{scheduled}/record").json()["audit_anchor"] == f"{before.seq}:{before.hash}"

    # A draft never ran: no anchor.
    draft = olly.post("/api/deployments", json=draft_body(datetime.now(UTC) + timedelta(hours=1))).json()
    assert olly.get(f"/api/deployments/{draft['id']}/record").json()["audit_anchor"] == ""


def _watchlist_needing_reembedding(app: FastAPI, enrolled_by: Client | None = None) -> None:
    """``hamilton``: P000 already up to date (an embedding of the current model), and BROKEN under another model
    with a stored face picture that is no picture (refused). With ``enrolled_by`` (and the shared stills), also
    Lin-Manuel Miranda enrolled by upload and then made to look enrolled under the other model."""
    add_watchlist(app, "hamilton", people=1, images_each=1)
    if enrolled_by is not None:
        photo = require_data("stills", "lin-manuel-miranda.png")
        enrol_upload(enrolled_by, "hamilton", "LMM-001", "Lin-Manuel Miranda", [photo])
    with app.state.server.sessions() as db:
        watchlist = db.scalar(sa.select(Watchlist).where(Watchlist.name == "hamilton"))
        now = datetime.now(UTC)
        broken = person_row(
            "BROKEN",
            watchlist=watchlist,
            display_name="Broken Picture",
            reason="test listing",
            added_by="test",
            added_at=now,
            expires_at=now + timedelta(days=30),
        )
        vector = np.ones(128, dtype=np.float32) / np.sqrt(128)
        broken.images.append(reference_image_row(vector, OTHER_MODEL, "b" * 64, source="broken.jpg"))
        db.add(broken)
        lmm = sa.select(Person.id).where(Person.reference_id == "LMM-001")
        first_model = ReferenceImage.model_id == model_id_for(Settings())  # not the SFace row of the same photo
        db.execute(
            sa.update(ReferenceImage).where(ReferenceImage.person_id.in_(lmm), first_model).values(model_id=OTHER_MODEL)
        )
        db.commit()


def test_reembedding_from_the_watchlists_page_names_the_people_and_is_audited(app: FastAPI) -> None:
    _watchlist_needing_reembedding(app)
    ann = login(app, "ann")
    page = ann.get("/watchlists").text
    assert 'data-api="/watchlists/{watchlist}/reembed"' in page and 'value="hamilton"' in page
    assert "Re-embed" not in login(app, "olly").get("/watchlists").text

    answer = ann.post("/watchlists/hamilton/reembed")
    assert answer.status_code == 200, answer.text
    fragment = html.unescape(answer.text)
    assert re.search(r'data-testid="reembedded">—<', fragment)
    assert re.search(r'data-testid="up-to-date">P000<', fragment)
    assert "<b>BROKEN</b>: broken.jpg:" in fragment
    (entry,) = entries(app, "watchlist.reembed")
    assert (entry.actor, entry.role, entry.target) == ("ann", "admin", "watchlist:hamilton")
    assert entry.details["up_to_date"] == 1 and entry.details["reembedded"] == 0
    assert [r["person"] for r in entry.details["refused"]] == ["BROKEN"]

    # The same role and CSRF rules as the API's route; a missing watchlist is one sentence.
    assert ann.http.post("/watchlists/hamilton/reembed").status_code == 403  # no CSRF token
    assert login(app, "olly").post("/watchlists/hamilton/reembed").status_code == 403
    missing = ann.post("/watchlists/nowhere/reembed")
    assert missing.status_code == 404 and "no watchlist named &#39;nowhere&#39;" in missing.text
    assert len(entries(app, "watchlist.reembed")) == 1


@pytest.mark.data
@pytest.mark.slow
def test_admin_creates_changes_disables_an_account_and_reembeds_in_the_browser(app: FastAPI) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no browser at {CHROMIUM} (Debian package chromium; `make system-deps` as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    _watchlist_needing_reembedding(app, enrolled_by=login(app, "ann"))
    ARTIFACTS.mkdir(exist_ok=True)
    with LiveServer(app) as server, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:

            def logged_in(username: str, password: str = PASSWORD) -> Any:
                return log_in(new_page(browser, 1400), server.url, username, None, password)

            ann = logged_in("ann")
            ann.goto(f"{server.url}/users")
            create = ann.locator("form[data-api='/api/users']")
            create.locator("input[name=username]").fill("carl")
            create.locator("select[name=role]").select_option("operator")
            create.locator("input[name=password]").fill("too-short")
            create.locator("button").click()
            error = create.locator("[data-error]")
            error.wait_for()
            assert error.inner_text() == "a password needs at least 12 characters"
            create.locator("input[name=password]").fill(PASSWORD)
            create.locator("button").click()
            carl = ann.locator("tr[data-user=carl]")
            carl.wait_for()
            assert carl.locator("[data-testid=role]").inner_text() == "operator"

            carl.locator("select[name=role]").select_option("auditor")
            carl.locator("button:has-text('Change role')").click()
            ann.wait_for_selector("tr[data-user=carl] [data-testid=role]:has-text('auditor')")
            ann.locator("tr[data-user=carl] button:has-text('disable')").click()
            ann.wait_for_selector("tr[data-user=carl] [data-testid=active]:has-text('no')")
            assert ann.locator("tr[data-user=carl] button:has-text('enable')").is_visible()
            ann.screenshot(path=str(ARTIFACTS / "console-users.png"), full_page=True)

            refused = logged_in("carl")
            assert refused.url.startswith(f"{server.url}/login")
            assert "wrong user name or password" in refused.inner_text("main")

            ann.goto(f"{server.url}/watchlists")
            ann.click("tr:has-text('hamilton') [data-testid=reembed]")
            result = ann.locator("[data-testid=reembed-result]")
            ann.wait_for_selector("[data-testid=reembed-summary]", timeout=60_000)
            assert result.locator("[data-testid=reembedded]").inner_text() == "LMM-001"
            assert result.locator("[data-testid=up-to-date]").inner_text() == "P000"
            assert result.locator("[data-testid=refused]").inner_text().startswith("BROKEN: broken.jpg:")
            ann.screenshot(path=str(ARTIFACTS / "console-reembed.png"), full_page=True)
        finally:
            browser.close()

    with app.state.server.sessions() as db:
        assert db.scalar(sa.select(User.active).where(User.username == "carl")) is False
        current = model_id_for(app.state.server.settings)
        lmm = sa.select(Person.id).where(Person.reference_id == "LMM-001")
        models = db.scalars(sa.select(ReferenceImage.model_id).where(ReferenceImage.person_id.in_(lmm))).all()
        second = second_model_id(app.state.server.settings)  # the SFace row enrolment made stays
        assert sorted(models) == sorted([OTHER_MODEL, current, *([second] if second else [])])
    made = [(e.actor, e.action, e.target) for e in entries(app) if e.target in ("user:carl", "watchlist:hamilton")]
    assert made == [
        ("ann", "user.create", "user:carl"),
        ("ann", "user.role", "user:carl"),
        ("ann", "user.disable", "user:carl"),
        ("carl", "login.failed", "user:carl"),
        ("ann", "watchlist.reembed", "watchlist:hamilton"),
    ]
    assert [e.details for e in entries(app, "login.failed")] == [
        {"ip": "127.0.0.1", "reason": "wrong user name or password"}
    ]
