"""The decision page (/alerts/{id}, issue 20 item 2): the score's calibrated false-match rate in words, when the
person was seen and how long ago, the track's best looks and the person's watchlist photos, a note with each step
(stored, shown, audited), a confirmation before a confirmed match or an outcome, and the undo of one's own latest
step within 30 s (audited; refused after, by anyone else, or once a later step was taken).

One server and one browser for the module. Alerts are written the way the live pipeline commits them
(``AlertDatabase.write``, with three looks of a real face); time is moved on the one clock, never slept through.
"""

from __future__ import annotations

import dataclasses
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from openlfr.alerts.database import AlertDatabase
from openlfr.alerts.outbox import alert_payload
from openlfr.clock import utc_now
from openlfr.services import reviews
from openlfr.services.audit_log import audit_key
from openlfr.services.context import Context
from openlfr.services.retention import enforce_retention, policy_of
from openlfr.store.alert_models import Alert, AlertLook
from openlfr.store.governance_models import AuditEntry, SnapshotImage
from openlfr.watchlist.calibration import false_match_rate
from tests import browserkit
from tests.serverkit import (
    JUSTIFICATION,
    MODEL_ID,
    LiveServer,
    add_cast,
    add_watchlist,
    build_app,
    configure,
    draft_body,
    login,
)
from tests.storekit import sighting

WAIT_MS = browserkit.EVENT_WAIT_MS
TRACKS = iter(range(500, 10_000))


def face_jpegs(count: int) -> list[bytes]:
    """Crops of a real face (the astronaut that ships with scikit-image), slightly different each."""
    from skimage import data

    image = np.ascontiguousarray(data.astronaut())
    crops = []
    for shift in range(count):
        crop = image[20 + 4 * shift : 220 + 4 * shift, 140 + 3 * shift : 320 + 3 * shift]
        buffer = io.BytesIO()
        Image.fromarray(crop).save(buffer, format="JPEG", quality=85)
        crops.append(buffer.getvalue())
    return crops


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, LiveServer, int]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENLFR_DATA_DIR", str(tmp_path_factory.mktemp("decision-data")))
        configure(patch)
        app = build_app()
        add_cast(app, "olly", "omar", "ava", "aud")
        add_watchlist(app, people=3)
        olly, ava = login(app, "olly"), login(app, "ava")
        drafted = olly.post("/api/deployments", json=draft_body(datetime.now(UTC) - timedelta(seconds=5))).json()
        authorised = ava.post(f"/api/deployments/{drafted['id']}/authorise", json={"justification": JUSTIFICATION})
        assert authorised.status_code == 200, authorised.text
        with app.state.server.sessions() as db:  # the snapshot's pictures as real photos, for the screenshots
            for image_id, jpeg in zip(
                db.scalars(sa.select(SnapshotImage.id).where(SnapshotImage.deployment_id == drafted["id"])),
                face_jpegs(12),
                strict=False,
            ):
                db.execute(sa.update(SnapshotImage).where(SnapshotImage.id == image_id).values(image_jpeg=jpeg))
            db.commit()
        with LiveServer(app) as server:
            yield app, server, drafted["id"]
        app.state.server.store.close()


def raise_alert(app: Any, deployment: int, looks: int = 3, seen_ago_s: float = 0.0) -> int:
    """An alert for P001 committed as the pipeline commits it, with ``looks`` of the track's best looks."""
    jpegs = face_jpegs(looks + 1)
    found = dataclasses.replace(
        sighting("P001", probe=jpegs[0], track_id=next(TRACKS), model_id=MODEL_ID),
        seen_at=utc_now() - timedelta(seconds=seen_ago_s),
        looks=tuple((0.9 - 0.1 * n, jpeg) for n, jpeg in enumerate(jpegs[1:])),
    )
    record, new = AlertDatabase(app.state.server.store).write(
        found, watchlist_name="wanted", names={"P001": "Person 1"}, deployment_id=deployment
    )
    assert new
    return record.id


def audit(app: Any, action: str, alert_id: int) -> list[AuditEntry]:
    with app.state.server.sessions() as db:
        return list(
            db.scalars(
                sa.select(AuditEntry)
                .where(AuditEntry.action == action, AuditEntry.target == f"alert:{alert_id}")
                .order_by(AuditEntry.seq)
            )
        )


def page_of(browser: Any, base: str, user: str, path: str, width: int = browserkit.WIDE) -> Any:
    page = browserkit.new_page(browser, width)
    browserkit.log_in(page, base, user)
    page.goto(f"{base}{path}")
    return page


@pytest.mark.slow
def test_the_page_says_how_rare_the_score_is_when_and_shows_the_looks_and_photos(site, browser) -> None:  # type: ignore[no-untyped-def]
    app, server, deployment = site
    alert = raise_alert(app, deployment, seen_ago_s=40)
    settings = app.state.server.settings
    rate = false_match_rate(MODEL_ID, 0.9, explicit=settings.calibration_file, data_dir=settings.data_dir)
    assert rate is not None, "the model's calibration table ships with the package"

    page = page_of(browser, server.url, "olly", f"/alerts/{alert}")
    fmr = page.locator("[data-testid=fmr]").inner_text()
    shown = re.search(r"Score 0\.900 \(threshold 0\.600\): 1 in ([\d,]+) strangers score this high", fmr)
    assert shown, fmr
    one_in = int(shown.group(1).replace(",", ""))
    assert 0.9 / rate <= one_in <= 1.1 / rate, (one_in, rate)  # the table's rate, in two significant figures

    ago = page.locator("[data-testid=ago]")
    first = ago.inner_text()
    assert re.fullmatch(r"\d+ s ago", first) and int(first.split()[0]) >= 40, first
    page.wait_for_function(  # updated by the page itself, with no reload
        "(first) => document.querySelector('[data-testid=ago]').textContent !== first", arg=first, timeout=WAIT_MS
    )

    looks = page.locator("[data-testid=looks] img")
    assert looks.count() == 3
    references = page.locator("[data-testid=references] img")
    with app.state.server.sessions() as db:
        listed = db.scalar(
            sa.select(sa.func.count())
            .select_from(SnapshotImage)
            .where(SnapshotImage.deployment_id == deployment, SnapshotImage.person.has(person_ref="P001"))
        )
    assert references.count() == listed == 2
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=looks] img, [data-testid=references] img')]"
        ".every(i => i.complete && i.naturalWidth > 0)",
        timeout=WAIT_MS,
    )
    problems = browserkit.check_page(page, "decision-olly-1366")
    page.close()
    for user, width in [("olly", browserkit.NARROW), ("ava", browserkit.WIDE), ("ava", browserkit.NARROW)]:
        other = page_of(browser, server.url, user, f"/alerts/{alert}", width)
        assert other.locator("[data-testid=looks] img").count() == 3
        problems += browserkit.check_page(other, f"decision-{user}-{width}")
        other.close()
    assert not problems, problems

    # The auditor sees no face: neither the page nor any of its pictures.
    aud = login(app, "aud")
    assert aud.get(f"/alerts/{alert}").status_code == 403
    for path in ("probe.jpg", "looks/1.jpg", "looks/3.jpg", "references/1.jpg", "reference.jpg"):
        assert aud.get(f"/api/alerts/{alert}/{path}").status_code == 403, path
    olly = login(app, "olly")
    assert olly.get(f"/api/alerts/{alert}/looks/3.jpg").headers["content-type"] == "image/jpeg"
    assert olly.get(f"/api/alerts/{alert}/looks/4.jpg").status_code == 404
    answer = olly.get(f"/api/alerts/{alert}").json()
    assert (answer["looks"], answer["references"], answer["false_match_rate"]) == (3, 2, rate)
    assert ("fitted tail" in fmr) is answer["false_match_extrapolated"], "an estimate beyond the table says so"


@pytest.mark.slow
def test_a_confirmed_match_needs_its_confirmation_and_keeps_its_note(site, browser) -> None:  # type: ignore[no-untyped-def]
    app, server, deployment = site
    alert = raise_alert(app, deployment)
    page = page_of(browser, server.url, "olly", f"/alerts/{alert}")
    note = "Same scar over the left eye; jacket as in the briefing."
    page.fill("[data-step-box] textarea[data-note]", note)
    page.click("button.decision-confirmed")
    dialog = page.locator("dialog[open]")
    dialog.wait_for(timeout=WAIT_MS)
    assert "this is Person 1" in dialog.inner_text()
    assert page.evaluate("document.activeElement.matches('[data-confirm-yes]')"), "the dialog takes the keyboard"
    problems = browserkit.check_page(page, "decision-confirm-dialog-olly-1366")
    page.keyboard.press("Escape")  # cancelled: nothing sent
    page.locator("dialog[open]").wait_for(state="detached", timeout=WAIT_MS)
    assert login(app, "olly").get(f"/api/alerts/{alert}").json()["decision"] is None

    page.click("button.decision-confirmed")
    page.locator("dialog[open] [data-confirm-yes]").click()
    page.wait_for_selector("[data-testid=stage]:has-text('awaiting verification')", timeout=WAIT_MS)
    assert page.locator("[data-testid=decision-note]").inner_text() == note
    (entry,) = audit(app, "alert.decide", alert)
    assert entry.details["note"] == note and entry.details["decision"] == "confirmed"

    # The second operator verifies with a note; the outcome asks for its confirmation too.
    omar = page_of(browser, server.url, "omar", f"/alerts/{alert}")
    omar.fill("[data-step-box] textarea[data-note]", "Agreed: ear shape too.")
    omar.click("button:has-text('Verify')")
    omar.wait_for_selector("[data-testid=verified]", timeout=WAIT_MS)
    assert omar.locator("[data-testid=verification-note]").inner_text() == "Agreed: ear shape too."
    assert audit(app, "alert.verify", alert)[0].details["note"] == "Agreed: ear shape too."
    page.reload()
    page.click("button:has-text('Not located')")
    page.locator("dialog[open]").wait_for(timeout=WAIT_MS)
    assert login(app, "olly").get(f"/api/alerts/{alert}").json()["outcome"] is None
    page.locator("dialog[open] [data-confirm-yes]").click()
    page.wait_for_selector("[data-testid=outcome]:has-text('Not located')", timeout=WAIT_MS)
    assert "note" not in audit(app, "alert.outcome", alert)[0].details  # no note given, none recorded
    problems += browserkit.check_page(page, "decision-closed-olly-1366")
    assert not problems, problems
    page.close()
    omar.close()


@pytest.mark.slow
def test_the_decider_undoes_within_30_s_and_not_after(site, browser, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    app, server, deployment = site
    alert = raise_alert(app, deployment)
    page = page_of(browser, server.url, "olly", f"/alerts/{alert}")
    page.click("button.decision-not_a_match")  # no confirmation for a match turned down
    page.wait_for_selector("[data-testid=stage]:has-text('closed')", timeout=WAIT_MS)
    page.click("button[data-undo]")
    page.wait_for_selector("[data-testid=stage]:has-text('awaiting decision')", timeout=WAIT_MS)
    (undone,) = audit(app, "alert.decision_undone", alert)
    assert (undone.actor, undone.details["step"], undone.details["was"]) == ("olly", "decision", "not_a_match")
    assert page.locator("button[data-undo]").count() == 0

    page.click("button.decision-cannot_tell")
    page.wait_for_selector("[data-testid=decision]:has-text('Cannot tell')", timeout=WAIT_MS)
    later = utc_now() + timedelta(seconds=31)
    monkeypatch.setattr(reviews, "utc_now", lambda: later)  # the one clock, moved past the 30 s
    page.click("button[data-undo]")
    error = page.locator("[data-error]")
    error.wait_for(state="visible", timeout=WAIT_MS)
    assert "within 30 s" in error.inner_text()
    assert login(app, "olly").get(f"/api/alerts/{alert}").json()["decision"] == "cannot_tell"
    assert len(audit(app, "alert.decision_undone", alert)) == 1
    page.close()


def test_undo_is_refused_to_anyone_else_and_after_a_later_step(site) -> None:  # type: ignore[no-untyped-def]
    app, _, deployment = site
    alert = raise_alert(app, deployment)
    olly, omar = login(app, "olly"), login(app, "omar")
    assert olly.post(f"/api/alerts/{alert}/undo").status_code == 409  # nothing to undo yet
    decided = olly.post(f"/api/alerts/{alert}/decision", json={"decision": "confirmed", "note": "  scar  "})
    assert decided.status_code == 200 and decided.json()["undo_until"] is not None
    assert decided.json()["decision_note"] == "scar"
    refused = omar.post(f"/api/alerts/{alert}/undo")
    assert refused.status_code == 409 and "only olly" in refused.json()["detail"]
    assert omar.get(f"/api/alerts/{alert}").json()["undo_until"] is None
    assert omar.post(f"/api/alerts/{alert}/verify").status_code == 200  # no body: no note
    later = olly.post(f"/api/alerts/{alert}/undo")
    assert later.status_code == 409, "a later step was taken: the decision is final"
    undone = omar.post(f"/api/alerts/{alert}/undo")  # the verifier's own latest step
    assert undone.status_code == 200 and undone.json()["verified_by"] is None
    assert undone.json()["decision"] == "confirmed"
    assert audit(app, "alert.decision_undone", alert)[0].details["step"] == "verification"
    # Notes are visible text of a sensible length.
    assert omar.post(f"/api/alerts/{alert}/verify", json={"note": "evil\u202etxt"}).status_code == 422
    assert omar.post(f"/api/alerts/{alert}/verify", json={"note": "x" * 1001}).status_code == 422
    assert login(app, "ava").post(f"/api/alerts/{alert}/undo").status_code == 403


def test_the_looks_go_with_the_probe_and_stay_while_held(site) -> None:  # type: ignore[no-untyped-def]
    app, _, deployment = site
    purged, held = raise_alert(app, deployment), raise_alert(app, deployment)
    state = app.state.server
    assert login(app, "ava").post(f"/api/alerts/{held}/hold", json={"reason": "Operation Falcon 2026/114"}).is_success
    with state.sessions() as db:
        row = db.get(Alert, purged)
        assert row is not None
        assert not any("look" in key for key in alert_payload(db, row)), "never in an event for a sink"
        counts = dict(db.execute(sa.select(AlertLook.alert_id, sa.func.count()).group_by(AlertLook.alert_id)).all())
        assert counts[purged] == counts[held] == 3
        ctx = Context.system(state.settings, audit_key(state.settings))
        later = utc_now() + timedelta(seconds=state.settings.probe_retention_seconds + 60)
        report = enforce_retention(db, ctx, policy_of(state.settings), now=later)
        db.commit()
        assert purged in report.probes_purged and held not in report.probes_purged
    olly = login(app, "olly")
    for n in (1, 2, 3):
        assert olly.get(f"/api/alerts/{purged}/looks/{n}.jpg").status_code == 404
        assert olly.get(f"/api/alerts/{held}/looks/{n}.jpg").status_code == 200
    assert olly.get(f"/api/alerts/{purged}").json()["looks"] == 0
    with state.sessions() as db:
        left = db.scalars(sa.select(AlertLook.alert_id).where(AlertLook.alert_id.in_([purged, held]))).all()
        assert set(left) == {held}
