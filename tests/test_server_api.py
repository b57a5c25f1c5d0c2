"""The operator server through its API: logins and throttling, the deployment life cycle with its rules,
the audit trail of every action, retention in seconds, and bad requests that change nothing."""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from openlfr.governance.roles import Role
from tests.conftest import OPENLFR_BIN
from tests.serverkit import (
    JUSTIFICATION,
    PASSWORD,
    add_cast,
    add_user,
    add_watchlist,
    build_app,
    configure,
    draft_body,
    login,
    login_form_token,
)


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, store_url: str):  # type: ignore[no-untyped-def]
    """The server on SQLite and on a real PostgreSQL (``store_url`` runs each test on both)."""
    configure(monkeypatch)
    application = build_app()
    add_cast(application)
    add_watchlist(application)
    yield application
    application.state.server.store.close()


def audit_actions(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    from openlfr.store.governance_models import AuditEntry

    with app.state.server.sessions() as db:
        return [(e.actor, e.action) for e in db.scalars(sa.select(AuditEntry).order_by(AuditEntry.seq))]


def table_counts(app) -> dict[str, int]:  # type: ignore[no-untyped-def]
    engine = app.state.server.store.engine
    with engine.connect() as c:
        names = sa.inspect(c).get_table_names()
        return {n: c.execute(sa.text(f'SELECT COUNT(*) FROM "{n}"')).scalar_one() for n in names}


def test_login_cookie_throttle_and_audit(app) -> None:  # type: ignore[no-untyped-def]
    http = TestClient(app, follow_redirects=False)
    token = login_form_token(http)
    ok = http.post("/login", data={"username": "olly", "password": PASSWORD, "csrf_token": token})
    assert ok.status_code == 303 and ok.headers["location"] == "/queue"
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie

    # No login without the login form's own CSRF token (login CSRF).
    stranger = TestClient(app, follow_redirects=False)
    refused = stranger.post("/login", data={"username": "olly", "password": PASSWORD, "csrf_token": "made-up"})
    assert refused.status_code == 400 and "openlfr_session" not in refused.headers.get("set-cookie", "")

    guesser = TestClient(app, follow_redirects=False)
    for _ in range(5):
        wrong = guesser.post(
            "/login",
            data={"username": "omar", "password": "guess-guess-guess", "csrf_token": login_form_token(guesser)},
        )
        assert wrong.status_code == 401
    # Locked out now, even with the right password; the lock is per user name, not per cookie jar.
    fresh = TestClient(app, follow_redirects=False)
    locked = fresh.post(
        "/login", data={"username": "omar", "password": PASSWORD, "csrf_token": login_form_token(fresh)}
    )
    assert locked.status_code == 429 and "too many" in locked.text
    assert TestClient(app).get("/api/me").status_code == 401
    actions = audit_actions(app)
    assert ("olly", "login") in actions
    assert actions.count(("omar", "login.failed")) == 6
    # An unknown user name fails the same way as a wrong password (no user enumeration).
    unknown = TestClient(app, follow_redirects=False)
    answer = unknown.post(
        "/login", data={"username": "nobody", "password": PASSWORD, "csrf_token": login_form_token(unknown)}
    )
    assert answer.status_code == 401 and "wrong user name or password" in answer.text


def test_deployment_life_cycle_and_rules(app) -> None:  # type: ignore[no-untyped-def]
    olly, ava, abe, aud = login(app, "olly"), login(app, "ava"), login(app, "abe"), login(app, "aud")
    start = datetime.now(UTC) - timedelta(minutes=1)
    made = olly.post("/api/deployments", json=draft_body(start))
    assert made.status_code == 201, made.text
    d = made.json()
    assert (d["phase"], d["may_match"]) == ("draft", False)

    assert olly.post(f"/api/deployments/{d['id']}/authorise", json={"justification": JUSTIFICATION}).status_code == 403
    short = ava.post(f"/api/deployments/{d['id']}/authorise", json={"justification": "fine"})
    assert short.status_code == 409 and "justification" in short.json()["detail"]
    done = ava.post(f"/api/deployments/{d['id']}/authorise", json={"justification": JUSTIFICATION})
    assert done.status_code == 200, done.text
    d = done.json()
    assert (d["phase"], d["may_match"], d["authorised_by"]) == ("live", True, "ava")
    assert d["watchlist_size"] == 6 and d["effective_threshold"] == pytest.approx(0.6)
    assert "threshold 0.6000" in d["threshold_note"]
    again = abe.post(f"/api/deployments/{d['id']}/authorise", json={"justification": JUSTIFICATION})
    assert again.status_code == 409

    # An authoriser cannot authorise their own draft.
    own = ava.post("/api/deployments", json=draft_body(start + timedelta(hours=3))).json()
    assert ava.post(f"/api/deployments/{own['id']}/authorise", json={"justification": JUSTIFICATION}).status_code == 409
    cancelled = abe.post(f"/api/deployments/{own['id']}/cancel", json={"reason": "not needed"}).json()
    assert (cancelled["phase"], cancelled["may_match"]) == ("cancelled", False)

    # A target false-alert rate picks the threshold for the snapshot's size, and says so.
    target = olly.post(
        "/api/deployments", json={**draft_body(start), "threshold": None, "target_fpir": 1 / 33000}
    ).json()
    picked = abe.post(f"/api/deployments/{target['id']}/authorise", json={"justification": JUSTIFICATION}).json()
    assert 0.0 < picked["effective_threshold"] < 1.0 and "1 in 33,000" in picked["threshold_note"]

    ended = olly.post(f"/api/deployments/{d['id']}/end").json()
    assert (ended["phase"], ended["may_match"]) == ("ended", False)
    record = aud.get(f"/api/deployments/{d['id']}/record.csv")
    assert record.status_code == 200 and record.text.startswith("deployment_id,name,date,place")
    assert aud.get(f"/deployments/{d['id']}").status_code == 200

    actions = audit_actions(app)
    for expected in [
        ("olly", "deployment.draft"),
        ("ava", "refused"),
        ("ava", "deployment.authorise"),
        ("abe", "deployment.cancel"),
        ("olly", "deployment.end"),
        ("aud", "export.record"),
    ]:
        assert expected in actions, expected
    verdict = aud.get("/api/audit/verify").json()
    assert verdict["ok"] and verdict["entries"] >= len(actions)


def test_settings_change_is_audited_and_typed(app) -> None:  # type: ignore[no-untyped-def]
    ann = login(app, "ann")
    assert ann.request("PUT", "/api/settings", json={"require_second_verifier": "no"}).status_code == 422
    changed = ann.request("PUT", "/api/settings", json={"require_second_verifier": False})
    assert changed.status_code == 200 and changed.json() == {"require_second_verifier": False}
    assert ("ann", "settings.change") in audit_actions(app)


def test_bad_requests_get_4xx_and_change_nothing(app) -> None:  # type: ignore[no-untyped-def]
    ann, olly = login(app, "ann"), login(app, "olly")
    start = datetime.now(UTC) + timedelta(hours=1)
    before = table_counts(app)
    cases = [
        # malformed JSON
        olly.post("/api/deployments", content=b'{"name": "x", ', headers={"Content-Type": "application/json"}),
        olly.post("/api/deployments", content=b"\xff\xfe\x00", headers={"Content-Type": "application/json"}),
        # wrong types
        olly.post("/api/deployments", json={**draft_body(start), "threshold": "0.6"}),
        olly.post("/api/deployments", json={**draft_body(start), "cameras": "entrance"}),
        olly.post("/api/deployments", json={**draft_body(start), "starts_at": "tomorrow"}),
        olly.post("/api/deployments", json={**draft_body(start), "starts_at": "2026-05-01T10:00:00"}),  # no zone
        olly.post("/api/deployments", json=[1, 2, 3]),
        olly.post("/api/alerts/abc/decision", json={"decision": "confirmed"}),
        olly.post("/api/alerts/1/decision", json={"decision": "probably"}),
        ann.request("PUT", "/api/settings", json={"require_second_verifier": 1}),
        ann.post("/api/users", json={"username": "x", "password": 12345678901234, "role": "admin"}),
        ann.post("/api/users", json={"username": "new", "password": PASSWORD, "role": "superuser"}),
        olly.post("/api/deployments", json={**draft_body(start), "extra": "field"}),
        # SQL in strings: refused as a name that does not exist, never run
        olly.post("/api/deployments", json=draft_body(start, watchlist="wanted' OR '1'='1")),
        olly.post("/api/deployments", json=draft_body(start, watchlist="x'; DROP TABLE deployments; --")),
        ann.post("/api/users", json={"username": "a'; DROP TABLE users;--", "password": PASSWORD, "role": "admin"}),
        olly.get("/api/records?since=2026-01-01'%20OR%201=1--"),
        olly.get("/api/alerts?deployment=1%20OR%201=1"),
        # path tricks
        olly.post(
            "/api/deployments", json={**draft_body(start), "cameras": [{"name": "c", "source": "../../etc/passwd"}]}
        ),
        olly.post(
            "/api/deployments", json={**draft_body(start), "cameras": [{"name": "../x", "source": "rtsp://h/s"}]}
        ),
        olly.get("/static/../openlfr.db"),
        olly.get("/static/%2e%2e/%2e%2e/pyproject.toml"),
        olly.get("/api/deployments/1/cameras/..%2F..%2Fetc%2Fpasswd/frame.jpg"),
        # oversized JSON
        olly.post("/api/deployments", json={**draft_body(start), "purpose": "x" * 2_000_000}),
        olly.post(
            "/api/deployments",
            content=json.dumps(draft_body(start)).encode(),
            headers={"Content-Type": "application/json", "Content-Length": "99999999999"},
        ),
    ]
    statuses = [answer.status_code for answer in cases]
    assert all(400 <= s < 500 for s in statuses), statuses
    assert statuses[-1] == 413 and statuses[-2] == 413
    for answer in cases:
        if answer.headers.get("content-type", "").startswith("application/json"):
            assert PASSWORD not in answer.text  # validation errors never echo the input
    assert table_counts(app) == before


def _jpeg_bytes() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_uploads_refuse_path_tricks_and_oversize(app, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    ann = login(app, "ann")
    app.state.server.settings.max_upload_bytes = 50_000
    form = {"person": "X1", "display_name": "X", "category": "other"}
    before = table_counts(app)
    for name in ["../../evil.jpg", "..\\..\\evil.jpg", "/etc/passwd.jpg", "a/b.jpg", "evil.sh", ".jpg", "x\x00.jpg"]:
        answer = ann.post("/api/watchlists/wanted/people", data=form, files=[("images", (name, _jpeg_bytes()))])
        assert answer.status_code == 400, (name, answer.status_code, answer.text)
    big = ann.post("/api/watchlists/wanted/people", data=form, files=[("images", ("big.jpg", b"\xff" * 60_000))])
    assert big.status_code == 413
    huge = ann.post("/api/watchlists/wanted/people", data=form, files=[("images", ("huge.jpg", b"\xff" * 1_200_000))])
    assert huge.status_code == 413
    nothing = ann.post("/api/watchlists/wanted/people", data=form)
    assert nothing.status_code == 422
    assert table_counts(app) == before


def test_enrolment_upload_runs_the_quality_gate(app, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("openlfr.enrolment.service", reason="enrolment (issue 3) not installed")
    import tempfile

    own_temp = tmp_path / "system-temp"  # the test's own temp folder, not the machine's shared one
    own_temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(own_temp))
    ann = login(app, "ann")
    form = {"person": "X1", "display_name": "X", "category": "other"}
    before = table_counts(app)
    # A picture with no face is refused by the enrolment gate with its reason; nothing is written.
    faceless = ann.post("/api/watchlists/wanted/people", data=form, files=[("images", ("plain.jpg", _jpeg_bytes()))])
    assert faceless.status_code == 422 and "plain.jpg" in faceless.text
    assert table_counts(app) == before
    staging = app.state.server.settings.data_dir / "uploads-in-progress"
    assert list(own_temp.iterdir()) == [] and list(staging.iterdir()) == []  # staged there, and removed


def test_retention_in_seconds_destroys_the_snapshot_and_keeps_the_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(monkeypatch, OPENLFR_SNAPSHOT_RETENTION_SECONDS="1", OPENLFR_RETENTION_INTERVAL_SECONDS="0.2")
    app = build_app(background=True)
    add_user(app, "olly", Role.OPERATOR)
    add_user(app, "ava", Role.AUTHORISER)
    add_watchlist(app, people=2, images_each=1)
    from openlfr.store.governance_models import Deployment, SnapshotImage, SnapshotPerson

    with TestClient(app):  # runs the lifespan: the retention loop
        olly, ava = login(app, "olly"), login(app, "ava")
        start = datetime.now(UTC) - timedelta(seconds=1)
        d = olly.post("/api/deployments", json=draft_body(start, hours=2.0 / 3600)).json()  # a 2 s window
        authorised = ava.post(f"/api/deployments/{d['id']}/authorise", json={"justification": JUSTIFICATION})
        assert authorised.status_code == 200
        with app.state.server.sessions() as db:
            assert db.scalar(sa.select(sa.func.count()).select_from(SnapshotImage)) == 2
            assert db.scalar(sa.select(sa.func.count()).select_from(SnapshotPerson)) == 2
        ends = datetime.fromisoformat(authorised.json()["ends_at"])
        deadline = time.monotonic() + 15
        destroyed_at = None
        while time.monotonic() < deadline:
            with app.state.server.sessions() as db:
                row = db.get(Deployment, d["id"])
                assert row is not None
                destroyed_at = row.snapshot_destroyed_at
                images = db.scalar(sa.select(sa.func.count()).select_from(SnapshotImage))
            if destroyed_at is not None:
                break
            assert images == 2  # nothing vanishes early
            time.sleep(0.1)
        assert destroyed_at is not None, "the snapshot was not destroyed"
        # Destroyed no sooner than 1 s after the end, and within a couple of loop rounds of it.
        assert ends + timedelta(seconds=1) <= destroyed_at <= ends + timedelta(seconds=5)
        with app.state.server.sessions() as db:
            assert db.scalar(sa.select(sa.func.count()).select_from(SnapshotImage)) == 0
            assert db.scalar(sa.select(sa.func.count()).select_from(SnapshotPerson)) == 0
            row = db.get(Deployment, d["id"])
            assert row is not None and row.status == "ended" and row.watchlist_size == 2
        record = olly.get(f"/api/deployments/{d['id']}/record").json()
        assert record["watchlist_size"] == 2 and record["status"] == "ended"
        assert ("system", "retention.snapshot_destroyed") in audit_actions(app)
    app.state.server.store.close()


def test_audit_verify_command_catches_tampering(app, store_url: str) -> None:  # type: ignore[no-untyped-def]
    olly = login(app, "olly")
    olly.post("/api/deployments", json=draft_body(datetime.now(UTC) + timedelta(hours=1)))
    app.state.server.store.close()
    env = {**os.environ}
    run = subprocess.run([str(OPENLFR_BIN), "audit", "verify", "--json"], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    good = json.loads(run.stdout)
    assert good["ok"] and good["entries"] >= 2

    # Someone with database access rewrites what a draft said, by SQL, behind the application's back.
    from openlfr.store.db import normalise_url

    engine = sa.create_engine(normalise_url(store_url))
    with engine.begin() as c:
        c.execute(sa.text("UPDATE audit_log SET actor = 'someone-else' WHERE action = 'deployment.draft'"))
        seq = c.execute(sa.text("SELECT seq FROM audit_log WHERE action = 'deployment.draft'")).scalar_one()
    engine.dispose()
    run = subprocess.run([str(OPENLFR_BIN), "audit", "verify"], capture_output=True, text=True, env=env)
    assert run.returncode == 1
    assert f"broken at entry {seq}: altered" in run.stdout


def test_expired_watchlist_entries_are_removed_after_the_grace_period(app) -> None:  # type: ignore[no-untyped-def]
    from openlfr.store.models import Person, ReferenceImage

    now = datetime.now(UTC)
    with app.state.server.sessions() as db:
        people = {p.reference_id: p for p in db.scalars(sa.select(Person))}
        people["P000"].expires_at = now - timedelta(days=8)  # expired longer ago than the 7-day default
        people["P001"].expires_at = now - timedelta(days=6)  # expired, still within the time to renew it
        db.commit()
    report = login(app, "ann").post("/api/retention/run")
    assert report.status_code == 200
    assert report.json()["expired_entries_removed"] == ["wanted/P000"]
    with app.state.server.sessions() as db:
        assert sorted(db.scalars(sa.select(Person.reference_id))) == ["P001", "P002"]
        assert db.scalar(sa.select(sa.func.count()).select_from(ReferenceImage)) == 4  # P000's two photos went too
    assert ("ann", "retention.expired_entries_removed") in audit_actions(app)
    again = login(app, "ann").post("/api/retention/run").json()
    assert again["expired_entries_removed"] == []


def test_an_anchor_catches_entries_cut_off_the_end(app, store_url: str) -> None:  # type: ignore[no-untyped-def]
    olly = login(app, "olly")
    olly.post("/api/deployments", json=draft_body(datetime.now(UTC) + timedelta(hours=1)))
    app.state.server.store.close()
    env = {**os.environ}

    def openlfr(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(OPENLFR_BIN), *args], capture_output=True, text=True, env=env)

    anchored = openlfr("audit", "anchor")
    assert anchored.returncode == 0, anchored.stderr
    anchor = anchored.stdout.strip()
    assert openlfr("audit", "verify", "--anchor", anchor).returncode == 0

    # Someone with database access removes the last entry and sets the head back to match: the chain alone
    # cannot tell, the anchor kept elsewhere can.
    from openlfr.store.db import normalise_url

    engine = sa.create_engine(normalise_url(store_url))
    with engine.begin() as c:
        last = c.execute(sa.text("SELECT max(seq) FROM audit_log")).scalar_one()
        c.execute(sa.text("DELETE FROM audit_log WHERE seq = :s"), {"s": last})
        prev = c.execute(sa.text("SELECT hash FROM audit_log WHERE seq = :s"), {"s": last - 1}).scalar_one()
        c.execute(sa.text("UPDATE audit_head SET seq = :s, hash = :h"), {"s": last - 1, "h": prev})
    engine.dispose()
    assert openlfr("audit", "verify").returncode == 0  # the gap the anchor closes
    cut = openlfr("audit", "verify", "--anchor", anchor)
    assert cut.returncode == 1 and f"broken at entry {last}: removed" in cut.stdout and "cut back" in cut.stdout

    bad = openlfr("audit", "verify", "--anchor", "12:nothex")
    assert bad.returncode == 2 and "SEQ:HASH" in bad.stderr and "Traceback" not in bad.stderr


def test_accounts_change_role_password_and_standing(app) -> None:  # type: ignore[no-untyped-def]
    ann, olly, omar, abe = (login(app, name) for name in ("ann", "olly", "omar", "abe"))
    ids = {u["username"]: u["id"] for u in ann.get("/api/users").json()}

    def refused_login(username: str, password: str = PASSWORD) -> bool:
        http = TestClient(app, follow_redirects=False)
        data = {"username": username, "password": password, "csrf_token": login_form_token(http)}
        return http.post("/login", data=data).status_code == 401

    # A new role ends the account's sessions (they carry the old role); the next login has the new one.
    changed = ann.post(f"/api/users/{ids['olly']}/role", json={"role": "auditor"})
    assert changed.status_code == 200 and changed.json()["role"] == "auditor"
    assert olly.get("/api/me").status_code == 401
    assert login(app, "olly").get("/api/me").json()["role"] == "auditor"
    assert ann.post(f"/api/users/{ids['ann']}/role", json={"role": "operator"}).status_code == 400  # not oneself
    assert ann.post(f"/api/users/{ids['olly']}/role", json={"role": "superuser"}).status_code == 422

    # Disabled: sessions end and logins fail; enabled again: the same password works.
    assert ann.post(f"/api/users/{ids['omar']}/disable").json()["active"] is False
    assert omar.get("/api/me").status_code == 401 and refused_login("omar")
    assert ann.post(f"/api/users/{ids['omar']}/enable").json()["active"] is True
    assert login(app, "omar").get("/api/me").status_code == 200

    # An administrator's reset ends the sessions; only the new password logs in.
    new = "a-much-longer-new-password"
    assert ann.post(f"/api/users/{ids['abe']}/password", json={"password": "short"}).status_code == 400
    assert ann.post(f"/api/users/{ids['abe']}/password", json={"password": new}).status_code == 200
    assert abe.get("/api/me").status_code == 401 and refused_login("abe")
    assert login(app, "abe", new).get("/api/me").status_code == 200

    # One's own password: only with the current one; then every session of one's own ends.
    ava = login(app, "ava")
    wrong = ava.post("/api/me/password", json={"current_password": "not-it-at-all", "new_password": new})
    assert wrong.status_code == 400 and ava.get("/api/me").status_code == 200
    right = ava.post("/api/me/password", json={"current_password": PASSWORD, "new_password": new})
    assert right.status_code == 200 and ava.get("/api/me").status_code == 401
    assert refused_login("ava") and login(app, "ava", new).get("/api/me").status_code == 200

    actions = audit_actions(app)
    for action in ("user.role", "user.disable", "user.enable", "user.password_reset", "user.password_change"):
        assert ("ann" if action != "user.password_change" else "ava", action) in actions
