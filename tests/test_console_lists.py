"""Lists that scale (issue 20 item 4): the audit log, the alert queue, deployments and records are paged and
filtered by the server; the audit log shows its details as key/value lines and exports the filtered entries (CSV
and JSON lines, streamed) for auditors, audited; the queue keeps its filters while it updates itself.

One server and one browser for the module. 120 audit entries are written through the audit log's own ``record``
(with their times two days ago, a minute apart) before anything else is audited, so the tests know each entry's
time; deployments and alerts are made through the API or as the pipeline commits them (``serverkit.add_alert``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from openlfr.governance import adjudication
from openlfr.governance.roles import Role
from openlfr.services import audit_log, listings
from openlfr.store.alert_models import Alert
from openlfr.store.governance_models import AlertReview, AuditEntry, Deployment
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
SYNTHETIC = 120
ACTORS = ("carol", "dave", "erin")
BASE = (datetime.now(UTC) - timedelta(days=2)).replace(second=0, microsecond=0)
INJECTION = '=HYPERLINK("http://127.0.0.1/x","click")'  # a target a spreadsheet would run as a formula
SECRET = "S3cret-pw"  # a camera's password: in no audit entry, so in no export
QUARRIES = 30  # draft deployments made for the deployments list's paging


def spec(i: int) -> dict[str, Any]:
    """The i-th synthetic audit entry (from 0): who, what, on what, when, with nested details."""
    details: dict[str, Any] = {"step": i, "place": {"name": "Yard", "gate": i % 2}, "tags": ["a", "b"], "note": None}
    details["ok"] = True
    if i == 7:
        details["formula"] = "+SUM(A1:A2)"
    return {
        "step": i,
        "actor": ACTORS[i % 3],
        "action": "drill.start" if i % 4 == 0 else "drill.step",
        "target": INJECTION if i == 7 else f"drill:{i % 5}",
        "details": details,
        "at": BASE + timedelta(minutes=i),
    }


SPECS = [spec(i) for i in range(SYNTHETIC)]


@dataclass
class Site:
    app: Any
    server: LiveServer
    high_street: int  # live, authorised; its alerts are the queue test's
    harbour: int  # live, authorised, elsewhere; a camera with a password
    staged: int  # live, authorised; alerts in every stage of review
    seqs: list[int]  # the synthetic entries' sequence numbers, in the order of SPECS


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENLFR_DATA_DIR", str(tmp_path_factory.mktemp("lists-data")))
        configure(patch)
        app = build_app()
        state = app.state.server
        with state.sessions() as db:
            written = [
                audit_log.record(
                    db, state.audit_key, s["actor"], "admin", s["action"], s["target"], s["details"], s["at"]
                )
                for s in SPECS
            ]
            seqs = [entry.seq for entry in written]
            db.commit()
            assert [e.at for e in db.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all()][:1] == [BASE]
        add_cast(app)
        add_watchlist(app, people=3)
        olly, ava = login(app, "olly"), login(app, "ava")

        def live(**extra: Any) -> int:
            body = draft_body(datetime.now(UTC) - timedelta(seconds=5), **extra)
            drafted = olly.post("/api/deployments", json=body)
            assert drafted.status_code == 201, drafted.text
            answer = ava.post(
                f"/api/deployments/{drafted.json()['id']}/authorise", json={"justification": JUSTIFICATION}
            )
            assert answer.status_code == 200, answer.text
            return int(drafted.json()["id"])

        high_street = live()
        camera = {"name": "quay", "source": f"rtsp://viewer:{SECRET}@127.0.0.1:8554/quay"}
        harbour = live(name="Harbour", place="Harbour quay", cameras=[camera])
        staged = live(name="Stages", place="Depot")
        with state.sessions() as db:
            for n in range(QUARRIES):
                starts = datetime.now(UTC) + timedelta(days=30 + n)
                db.add(
                    Deployment(
                        name=f"Quarry drill {n}",
                        place=f"Quarry {n}",
                        purpose="paging",
                        starts_at=starts,
                        ends_at=starts + timedelta(hours=1),
                        cameras=[],
                        watchlist_name="wanted",
                        created_by="olly",
                    )
                )
            starts = datetime.now(UTC) + timedelta(days=90)
            db.add(
                Deployment(
                    name="Archive search",
                    place="Archive room",
                    purpose="retrospective",
                    starts_at=starts,
                    ends_at=starts + timedelta(hours=1),
                    cameras=[],
                    watchlist_name="wanted",
                    created_by="olly",
                    kind="retrospective",
                )
            )
            db.commit()
        with LiveServer(app) as server:
            yield Site(app, server, high_street, harbour, staged, seqs)
        state.store.close()


@pytest.fixture(scope="module")
def pages(site: Site, browser: Any) -> Iterator[dict[str, Any]]:
    """A logged-in page per member of the cast, opened when first asked for."""
    opened: dict[str, Any] = {}

    class Pages(dict[str, Any]):
        def __missing__(self, name: str) -> Any:
            page = browserkit.log_in(browserkit.new_page(browser), site.server.url, name)
            opened[name] = page
            self[name] = page
            return page

    yield Pages()
    for page in opened.values():
        page.context.close()


def summary(page: Any) -> str:
    return str(page.inner_text("[data-testid=page-summary]")).strip()


def seqs_shown(page: Any) -> list[int]:
    return [int(s) for s in page.eval_on_selector_all("[data-seq]", "rows => rows.map(r => r.dataset.seq)")]


def at(i: int) -> str:
    """The i-th entry's time as a datetime-local input takes it (whole minutes: no seconds)."""
    return SPECS[i]["at"].strftime("%Y-%m-%dT%H:%M")


def test_audit_pages_through_the_log_by_key(site: Site, pages: dict[str, Any]) -> None:
    page = pages["aud"]
    newest_first = sorted(site.seqs, reverse=True)
    page.goto(f"{site.server.url}/audit?action=drill.*")
    assert summary(page) == f"Entries 1–50 of {SYNTHETIC}"
    assert seqs_shown(page) == newest_first[:50]
    page.click("[data-testid=next-page]")
    page.wait_for_url("**before=*")
    assert "action=drill." in page.url  # the filter is kept
    assert summary(page) == f"Entries 51–100 of {SYNTHETIC}"
    assert seqs_shown(page) == newest_first[50:100]
    page.click("[data-testid=next-page]")
    page.wait_for_function("document.querySelector('[data-testid=page-summary]').textContent.includes('101')")
    assert summary(page) == f"Entries 101–120 of {SYNTHETIC}"
    assert seqs_shown(page) == newest_first[100:]
    assert page.locator("[data-testid=next-page]").count() == 0
    page.click("[data-testid=prev-page]")
    page.wait_for_url("**after=*")
    assert summary(page) == f"Entries 51–100 of {SYNTHETIC}"
    assert seqs_shown(page) == newest_first[50:100]
    page.goto(f"{site.server.url}/audit?size=25")  # the whole log: the synthetic entries and what came after
    assert summary(page).startswith("Entries 1–25 of ") and len(seqs_shown(page)) == 25


def test_audit_filters_by_actor_action_target_and_time(site: Site, pages: dict[str, Any]) -> None:
    page = pages["aud"]
    page.goto(f"{site.server.url}/audit")
    page.fill("input[name=actor]", "carol")
    page.fill("input[name=from]", at(10))
    page.fill("input[name=to]", at(29))
    page.click(".filters button[type=submit]")
    page.wait_for_url("**actor=carol*")
    wanted = [seq for seq, s in zip(site.seqs, SPECS, strict=True) if s["actor"] == "carol" and 10 <= s["step"] <= 29]
    assert len(wanted) == 6 and summary(page) == "Entries 1–6 of 6"
    assert seqs_shown(page) == sorted(wanted, reverse=True)
    page.click("[data-testid=clear-filters]")
    page.wait_for_url(f"{site.server.url}/audit")
    cases = {
        "actor=dave": lambda s: s["actor"] == "dave",
        "action=drill.start": lambda s: s["action"] == "drill.start",
        "target=drill:3": lambda s: s["target"] == "drill:3",
        "target=drill:*": lambda s: s["target"].startswith("drill:"),
        f"from={at(100)}": lambda s: s["step"] >= 100,  # and every later entry (logins, drafts ...)
        f"action=drill.*&from={at(5)}&to={at(14)}": lambda s: 5 <= s["step"] <= 14,
    }
    for query, wanted_if in cases.items():
        page.goto(f"{site.server.url}/audit?size=200&{query}")
        expected = sorted((seq for seq, s in zip(site.seqs, SPECS, strict=True) if wanted_if(s)), reverse=True)
        shown = seqs_shown(page)
        if query.startswith("from="):
            assert shown[-len(expected) :] == expected and min(shown) == min(expected), query
        else:
            assert shown == expected, query
            assert summary(page) == f"Entries 1–{len(expected)} of {len(expected)}", query
    page.goto(f"{site.server.url}/audit?from=yesterday&actor=%00")  # said, and left out (PostgreSQL refuses NUL)
    said = page.inner_text("main")
    assert "not a date and time" in said and "contains U+0000" in said


def test_audit_details_read_as_key_value_lines(site: Site, pages: dict[str, Any]) -> None:
    page = pages["aud"]
    page.goto(f"{site.server.url}/audit?target=drill:1&to={at(1)}")
    pairs = page.eval_on_selector_all(
        f"[data-seq='{site.seqs[1]}'] dl.details dt",
        "dts => dts.map(dt => [dt.textContent, dt.nextElementSibling.textContent])",
    )
    assert dict(pairs) == {
        "step": "1",
        "place.name": "Yard",
        "place.gate": "1",
        "tags": "a, b",
        "note": "none",
        "ok": "yes",
    }
    text = page.inner_text("[data-testid=audit-table]")
    assert '{"' not in text and '":' not in text  # no raw JSON left


def download(page: Any, selector: str) -> str:
    with page.expect_download() as started:
        page.click(selector)
    return Path(started.value.path()).read_text(encoding="utf-8")


def test_audit_export_csv_and_json_lines_audited(site: Site, pages: dict[str, Any]) -> None:
    page = pages["aud"]
    page.goto(f"{site.server.url}/audit?action=drill.*&to={at(19)}")
    first = [seq for seq, s in zip(site.seqs, SPECS, strict=True) if s["step"] <= 19]
    rows = list(csv.reader(io.StringIO(download(page, "[data-testid=export-csv]"))))
    assert rows[0] == list(audit_log.EXPORT_COLUMNS)
    assert [int(r[0]) for r in rows[1:]] == first  # oldest first, exactly the filtered entries
    by_seq = {int(r[0]): dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    injected = by_seq[site.seqs[7]]
    assert injected["target"] == "'" + INJECTION  # neutralised: a spreadsheet shows it as text
    assert json.loads(injected["details"]) == SPECS[7]["details"]
    assert by_seq[site.seqs[3]]["actor"] == "carol" and by_seq[site.seqs[3]]["target"] == "drill:3"
    lines = download(page, "[data-testid=export-jsonl]").splitlines()
    objects = [json.loads(line) for line in lines]
    assert [o["seq"] for o in objects] == first
    assert [o["details"] for o in objects] == [s["details"] for s in SPECS[:20]]
    assert objects[7]["target"] == INJECTION  # JSON is data, not a formula: kept as written

    aud = login(site.app, "aud")
    exports = aud.get("/api/audit", params={"action": "export.audit", "actor": "aud"}).json()
    assert [(e["details"]["format"], e["details"]["entries"]) for e in exports[:2]] == [("jsonl", 20), ("csv", 20)]
    assert exports[0]["details"]["filters"] == {"action": "drill.*", "to": SPECS[19]["at"].isoformat()}
    assert exports[0]["target"] == "audit_log" and exports[0]["role"] == Role.AUDITOR.value

    # The whole log, by the API: no secret anywhere in it; the admin may export too, an operator may not.
    for fmt in ("csv", "jsonl"):
        whole = aud.get("/api/audit/export", params={"format": fmt})
        assert whole.status_code == 200 and SECRET not in whole.text
        assert int(whole.headers["x-audit-entries"]) >= SYNTHETIC
        assert f"deployment:{site.harbour}" in whole.text  # its drafting and authorisation are there, no password
    assert login(site.app, "ann").get("/api/audit/export", params={"format": "csv", "actor": "erin"}).status_code == 200
    assert login(site.app, "olly").get("/api/audit/export").status_code == 403
    refused = aud.get("/api/audit/export", params={"actor": "\x00", "to": "2026-01-01T00:00:00"})
    assert refused.status_code in (400, 422) and "\x00" not in refused.text


def test_queue_stages_as_sql_match_the_rule(site: Site) -> None:
    """Each way a review can stand, filtered in SQL, lands in the stage ``adjudication.stage`` gives it."""
    reviews: list[dict[str, Any] | None] = [None, {"decision": None}]
    reviews += [{"decision": d} for d in ("not_a_match", "cannot_tell")]
    reviews += [
        {"decision": "confirmed", "verified_by": verified, "outcome": outcome}
        for verified in (None, "omar")
        for outcome in (None, "arrested")
    ]
    ids: dict[int, dict[str, Any] | None] = {}
    for n, facts in enumerate(reviews):
        alert_id = add_alert(site.app, site.staged, "P001", track_id=500 + n, camera="yard")
        ids[alert_id] = facts
        if facts is not None:
            with site.app.state.server.sessions() as db:
                alert = db.get(Alert, alert_id)
                assert alert is not None
                db.add(AlertReview(alert_id=alert_id, deployment_id=site.staged, alert_at=alert.seen_at, **facts))
                db.commit()
    with site.app.state.server.sessions() as db:
        for second in (True, False):
            for stage in (*listings.STAGES, listings.OPEN):
                where = listings.QueueFilter(state=stage, deployment_id=site.staged)
                found = {alert.id for alert, _ in db.execute(listings.queue_query(where, second)).all()}
                saved = {a: db.get(AlertReview, a) for a in ids}
                expected = {a for a, r in saved.items() if adjudication.stage(r, second) == stage}
                if stage == listings.OPEN:
                    expected = {a for a, r in saved.items() if adjudication.stage(r, second) != "closed"}
                assert found == expected, (stage, second)


def queue_rows(page: Any) -> list[int]:
    """The alerts of the queue's main list (not those recently closed, listed after it)."""
    return [
        int(a)
        for a in page.eval_on_selector_all(
            "#queue [data-alert]",
            "rows => rows.filter(r => !r.classList.contains('stage-closed')).map(r => r.dataset.alert)",
        )
    ]


def test_queue_filters_hold_while_it_updates_itself(site: Site, pages: dict[str, Any]) -> None:
    entrance = add_alert(site.app, site.high_street, "P001", track_id=1)
    side = add_alert(site.app, site.high_street, "P002", track_id=2, camera="side")
    elsewhere = add_alert(site.app, site.harbour, "P001", track_id=3)
    dismissed = add_alert(site.app, site.high_street, "P002", track_id=4)
    olly = login(site.app, "olly")
    assert olly.post(f"/api/alerts/{dismissed}/decision", json={"decision": "not_a_match"}).status_code == 200

    page = pages["olly"]
    page.goto(f"{site.server.url}/queue")
    page.select_option("select[name=deployment]", str(site.high_street))
    page.fill("input[name=camera]", "entrance")
    page.click(".filters button[type=submit]")
    page.wait_for_url("**camera=entrance*")
    assert queue_rows(page) == [entrance]
    assert page.inner_text("[data-testid=waiting-count]") == "1"
    assert f'data-alert="{dismissed}"' in page.inner_html("#queue")  # under "Recently closed"
    page.evaluate("window.__sameDocument = true")
    url = page.url

    ignored = add_alert(site.app, site.harbour, "P002", track_id=5)  # another deployment: filtered out
    arrived = add_alert(site.app, site.high_street, "P002", track_id=6)
    page.wait_for_selector(f"#queue [data-alert='{arrived}']", timeout=WAIT_MS)
    assert queue_rows(page) == [arrived, entrance]
    assert page.inner_text("[data-testid=waiting-count]") == "2"
    html = page.inner_html("#queue")
    assert all(f'data-alert="{a}"' not in html for a in (ignored, elsewhere, side))
    assert page.evaluate("window.__sameDocument === true") and page.url == url  # updated in place

    page.goto(f"{site.server.url}/queue?state=closed&deployment={site.high_street}")
    assert [int(a) for a in page.eval_on_selector_all("#queue [data-alert]", "r => r.map(a => a.dataset.alert)")] == [
        dismissed
    ]
    page.goto(f"{site.server.url}/queue?camera=side")
    assert queue_rows(page) == [side]


def deployment_ids(page: Any) -> list[int]:
    return [int(d) for d in page.eval_on_selector_all("[data-deployment]", "r => r.map(d => d.dataset.deployment)")]


def test_deployments_and_records_filters(site: Site, pages: dict[str, Any]) -> None:
    page = pages["ava"]
    page.goto(f"{site.server.url}/deployments")
    page.select_option("select[name=state]", "draft")
    page.fill("input[name=place]", "quarry")
    page.select_option("select[name=size]", "25")
    page.click(".filters button[type=submit]")
    page.wait_for_url("**place=quarry*")
    assert summary(page) == f"Deployments 1–25 of {QUARRIES}"
    first = deployment_ids(page)
    page.click("[data-testid=next-page]")
    page.wait_for_url("**page=2*")
    assert summary(page) == f"Deployments 26–{QUARRIES} of {QUARRIES}"
    assert "state=draft" in page.url and not set(first) & set(deployment_ids(page))
    page.goto(f"{site.server.url}/deployments?state=live")
    assert set(deployment_ids(page)) == {site.high_street, site.harbour, site.staged}
    page.goto(f"{site.server.url}/deployments?place=HARBOUR")
    assert deployment_ids(page) == [site.harbour]
    page.goto(f"{site.server.url}/deployments?kind=retrospective")
    assert [page.inner_text(f"[data-deployment='{d}'] a") for d in deployment_ids(page)] == ["Archive search"]

    page.goto(f"{site.server.url}/records?place=harbour")
    assert summary(page) == "Records 1–1 of 1" and "Harbour" in page.inner_text("table")
    assert exported_ids(site, page) == [site.harbour], "the CSV link exports what the page shows"
    page.goto(f"{site.server.url}/records?kind=retrospective")  # drafts never ran: no record
    assert "No records." in page.inner_text("main")
    assert exported_ids(site, page) == []
    page.goto(f"{site.server.url}/records")
    assert {site.high_street, site.harbour, site.staged} <= set(exported_ids(site, page))
    answer = page.request.get(f"{site.server.url}/api/records?kind=live&place=QUAY")
    assert [r["deployment_id"] for r in answer.json()] == [site.harbour]
    assert page.request.get(f"{site.server.url}/api/records?kind=parade").status == 422


def exported_ids(site: Site, page: Any) -> list[int]:
    """The deployments in the CSV that the records page's download link gives."""
    link = page.get_attribute("a[href^='/api/records.csv']", "href")
    exported = page.request.get(f"{site.server.url}{link}")
    assert exported.ok, exported.text()
    return [int(row["deployment_id"]) for row in csv.DictReader(io.StringIO(exported.text()))]


# Each list page, for each role that sees it (25 to a page: long enough to stack and wrap, quicker to check).
PAGES = {
    "/audit?size=25": ("aud", "ann"),
    "/queue": ("olly", "ava"),
    "/deployments?size=25": ("ann", "olly", "ava", "aud"),
    "/records": ("ann", "olly", "ava", "aud"),
}


def test_list_pages_accessible_and_narrow(site: Site, pages: dict[str, Any]) -> None:
    problems: list[str] = []
    for path, who in PAGES.items():
        for name in who:
            page = pages[name]
            for width in browserkit.WIDTHS:
                page.set_viewport_size({"width": width, "height": 900})
                page.goto(f"{site.server.url}{path}")
                problems += browserkit.check_page(page, f"lists-{path.strip('/?=').split('?')[0]}-{name}-{width}")
            page.set_viewport_size({"width": browserkit.WIDE, "height": 900})
    assert not problems, "\n".join(problems)
