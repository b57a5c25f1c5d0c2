"""Alerts after the pipeline has committed them: the queue, human decisions, the second operator's check, the
outcome, the record; and the retention of probe images (purged on time unless held for an investigation)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from openlfr.governance.roles import Role
from tests.serverkit import JUSTIFICATION, add_alert, add_user, add_watchlist, build_app, configure, draft_body, login

USERS = [
    ("ann", Role.ADMIN),
    ("olly", Role.OPERATOR),
    ("omar", Role.OPERATOR),
    ("ava", Role.AUTHORISER),
    ("aud", Role.AUDITOR),
]


def live_deployment(app, hours: float = 2.0) -> int:  # type: ignore[no-untyped-def]
    olly, ava = login(app, "olly"), login(app, "ava")
    d = olly.post("/api/deployments", json=draft_body(datetime.now(UTC) - timedelta(seconds=5), hours=hours)).json()
    answer = ava.post(f"/api/deployments/{d['id']}/authorise", json={"justification": JUSTIFICATION})
    assert answer.status_code == 200, answer.text
    return int(d["id"])


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, store_url: str):  # type: ignore[no-untyped-def]
    """The server on SQLite and on a real PostgreSQL (``store_url`` runs each test on both)."""
    configure(monkeypatch)
    application = build_app()
    for name, role in USERS:
        add_user(application, name, role)
    add_watchlist(application)
    yield application
    application.state.server.store.close()


def test_decision_second_check_outcome_and_record(app) -> None:  # type: ignore[no-untyped-def]
    deployment = live_deployment(app)
    alert = add_alert(app, deployment, "P001")
    false_alert = add_alert(app, deployment, "P002", score=0.65)
    olly, omar, ava, aud = login(app, "olly"), login(app, "omar"), login(app, "ava"), login(app, "aud")

    queue = olly.get("/api/alerts?open_only=true").json()
    assert [a["alert_id"] for a in queue] == [false_alert, alert]
    first = queue[1]
    assert (first["stage"], first["person_name"], first["category"], first["camera"]) == (
        "awaiting decision",
        "Person 1",
        "wanted_offence",
        "entrance",
    )
    assert first["reason"] == "wanted for test offence 1" and first["has_probe"] and first["has_reference"]
    assert olly.get(f"/api/alerts/{alert}/probe.jpg").content.startswith(b"\xff\xd8")
    assert olly.get(f"/api/alerts/{alert}/reference.jpg").content.startswith(b"\xff\xd8")
    assert aud.get(f"/api/alerts/{alert}/probe.jpg").status_code == 403  # auditors see no biometric images

    # No outcome before a decision, and before a second operator's check.
    assert olly.post(f"/api/alerts/{alert}/outcome", json={"outcome": "arrested"}).status_code == 409
    assert olly.post(f"/api/alerts/{alert}/decision", json={"decision": "confirmed"}).json()["stage"] == (
        "awaiting verification"
    )
    assert olly.post(f"/api/alerts/{alert}/decision", json={"decision": "not_a_match"}).status_code == 409
    assert olly.post(f"/api/alerts/{alert}/outcome", json={"outcome": "arrested"}).status_code == 409
    assert olly.post(f"/api/alerts/{alert}/verify").status_code == 409  # not the same operator
    assert ava.post(f"/api/alerts/{alert}/verify").status_code == 403  # an authoriser is not an operator
    assert omar.post(f"/api/alerts/{alert}/verify").json()["stage"] == "awaiting outcome"
    done = olly.post(f"/api/alerts/{alert}/outcome", json={"outcome": "arrested"}).json()
    assert (done["stage"], done["outcome"], done["verified_by"]) == ("closed", "arrested", "omar")
    assert (
        omar.post(f"/api/alerts/{false_alert}/decision", json={"decision": "not_a_match"}).json()["stage"] == "closed"
    )
    assert omar.post(f"/api/alerts/{false_alert}/verify").status_code == 409

    assert olly.get("/api/alerts?open_only=true").json() == []
    record = aud.get(f"/api/deployments/{deployment}/record").json()
    assert (record["alerts"], record["confirmed"], record["false_alerts"], record["verified"], record["arrested"]) == (
        2,
        1,
        1,
        1,
        1,
    )
    page = aud.get(f"/deployments/{deployment}").text
    assert 'data-testid="arrested">1<' in page
    actions = [a["action"] for a in aud.get("/api/audit?limit=50").json()]
    for action in ("alert.decide", "alert.verify", "alert.outcome"):
        assert action in actions
    assert aud.get("/api/audit/verify").json()["ok"]


def test_second_check_can_be_switched_off_by_an_admin(app) -> None:  # type: ignore[no-untyped-def]
    deployment = live_deployment(app)
    alert = add_alert(app, deployment)
    ann, olly = login(app, "ann"), login(app, "olly")
    assert ann.request("PUT", "/api/settings", json={"require_second_verifier": False}).status_code == 200
    olly.post(f"/api/alerts/{alert}/decision", json={"decision": "confirmed"})
    answer = olly.post(f"/api/alerts/{alert}/outcome", json={"outcome": "not_located"})
    assert answer.status_code == 200 and answer.json()["verified_by"] is None


def test_console_queue_and_alert_pages(app) -> None:  # type: ignore[no-untyped-def]
    deployment = live_deployment(app)
    alert = add_alert(app, deployment)
    olly = login(app, "olly")
    queue = olly.get("/queue/items").text
    assert f'data-alert="{alert}"' in queue and "awaiting decision" in queue
    page = olly.get(f"/alerts/{alert}").text
    assert "Person 1" in page and "decision-confirmed" in page and f"/api/alerts/{alert}/probe.jpg" in page


def test_probe_images_purged_on_time_unless_held(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, OPENLFR_PROBE_RETENTION_SECONDS="2", OPENLFR_RETENTION_INTERVAL_SECONDS="0.2")
    app = build_app(background=True)
    for name, role in USERS:
        add_user(app, name, role)
    add_watchlist(app)
    from openlfr.store.alert_models import Alert

    with TestClient(app):
        deployment = live_deployment(app)
        kept = add_alert(app, deployment, "P001")
        purged = add_alert(app, deployment, "P002")
        olly, ava = login(app, "olly"), login(app, "ava")
        olly.post(f"/api/alerts/{purged}/decision", json={"decision": "not_a_match"})
        held = ava.post(f"/api/alerts/{kept}/hold", json={"reason": "Operation Falcon, case 2026/114"})
        assert held.status_code == 200, held.text
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and olly.get(f"/api/alerts/{purged}/probe.jpg").status_code == 200:
            time.sleep(0.1)
        with app.state.server.sessions() as db:
            created = db.scalar(sa.select(Alert.created_at).where(Alert.id == purged))
        purged_at = datetime.fromisoformat(olly.get(f"/api/alerts/{purged}").json()["probe_purged_at"])
        # Not before its time, and within a few rounds of the retention loop after it.
        assert created + timedelta(seconds=2) <= purged_at <= created + timedelta(seconds=4)
        assert olly.get(f"/api/alerts/{kept}/probe.jpg").status_code == 200  # held for the investigation
        with app.state.server.sessions() as db:
            probes = dict(db.execute(sa.select(Alert.id, Alert.probe_jpeg)).all())
        assert probes[purged] is None and probes[kept] is not None
        after = olly.get(f"/api/alerts/{purged}").json()
        assert after["has_probe"] is False and after["decision"] == "not_a_match" and after["probe_purged_at"]
        record = olly.get(f"/api/deployments/{deployment}/record").json()
        assert (record["alerts"], record["false_alerts"]) == (2, 1)  # the counts stay
    app.state.server.store.close()
