"""Adjudication and the last-administrator rule under real concurrency: requests from threads, released together
by a barrier, against one real server per database (SQLite and PostgreSQL). Every round has exactly one winner,
the others are refused (409, never a 500), the stored state is the winner's, and the audit log holds exactly one
entry for the one change that took effect."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from openlfr.clock import utc_now
from openlfr.governance.deployments import TransitionRefused
from openlfr.governance.roles import Role
from openlfr.services import accounts
from openlfr.services.context import Context
from openlfr.services.retention import PurgeReport, enforce_once
from openlfr.store.alert_models import Alert
from openlfr.store.governance_models import AlertReview, AuditEntry, User
from tests.postgres import PostgresServer
from tests.serverkit import PASSWORD, LiveServer, add_alert, add_cast, add_watchlist, build_app, configure
from tests.test_server_alerts import live_deployment

ROUNDS = 20
pytestmark = pytest.mark.slow


@dataclass
class Served:
    app: FastAPI
    url: str
    deployment: int
    tokens: dict[str, str]  # login -> API token

    def token_for(self, username: str) -> str:
        with self.app.state.server.sessions() as db:
            user = accounts.find_account(db, username)
            token = accounts.open_session(db, user, "token", timedelta(hours=2))
            db.commit()
        self.tokens[username] = token
        return token

    def scalar(self, query: Any) -> Any:
        with self.app.state.server.sessions() as db:
            return db.scalar(query)

    def entries(self, action: str, *targets: str) -> list[AuditEntry]:
        with self.app.state.server.sessions() as db:
            query = sa.select(AuditEntry).where(AuditEntry.action == action, AuditEntry.target.in_(targets))
            return list(db.scalars(query.order_by(AuditEntry.seq)))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for every round of every test in this module, on each database."""
    with pytest.MonkeyPatch.context() as patch:
        data_dir: Path = tmp_path_factory.mktemp("concurrency") / "openlfr-data"
        patch.setenv("OPENLFR_DATA_DIR", str(data_dir))
        database: str | None = None
        postgres: PostgresServer | None = None
        if request.param == "postgresql":
            postgres = request.getfixturevalue("postgres_server")
            database = f"t_{uuid.uuid4().hex[:12]}"
            postgres.admin(f'CREATE DATABASE "{database}"')
            patch.setenv("OPENLFR_DATABASE_URL", postgres.url(database))
        else:
            patch.delenv("OPENLFR_DATABASE_URL", raising=False)
        configure(patch)
        app = build_app()
        try:
            add_cast(app)
            add_watchlist(app)
            deployment = live_deployment(app)
            with LiveServer(app) as server:
                served = Served(app, server.url, deployment, {})
                for login in ("olly", "omar", "aud"):
                    served.token_for(login)
                yield served
        finally:
            app.state.server.store.close()
            if postgres is not None and database is not None:
                postgres.admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def call(served: Served, login: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {served.tokens[login]}"}
    return httpx.post(served.url + path, json=body, headers=headers, timeout=60)


Call = tuple[str, str, dict[str, Any] | None]  # who, POST where, with which body
Job = Callable[[threading.Barrier], Any]  # made ready, waits at the barrier, then acts


def at_once(jobs: Sequence[Job]) -> list[Any]:
    """Each job in its own thread, all released together once every one is ready; their results in order."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)

    def run(index: int, job: Job) -> None:
        results[index] = job(barrier)

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(not thread.is_alive() for thread in threads)
    return results


def post(served: Served, login: str, path: str, body: dict[str, Any] | None) -> Job:
    def job(barrier: threading.Barrier) -> int:
        headers = {"Authorization": f"Bearer {served.tokens[login]}"}
        with httpx.Client(base_url=served.url, headers=headers, timeout=60) as client:
            assert client.get("/api/me").status_code == 200  # connected, and the token known, before the race
            barrier.wait(timeout=60)
            return client.post(path, json=body).status_code

    return job


def race(served: Served, calls: Sequence[Call]) -> list[int]:
    """Each (login, path, body) POSTed from its own thread, all released at once; their statuses in order."""
    return at_once([post(served, *call) for call in calls])


def one_winner(statuses: list[int], losers: tuple[int, ...] = (409,)) -> int:
    """The index of the one request that succeeded; every other was refused with one of ``losers``."""
    assert statuses.count(200) == 1, statuses
    assert all(status in losers for status in statuses if status != 200), statuses
    return statuses.index(200)


def review(served: Served, alert: int) -> AlertReview:
    found = served.scalar(sa.select(AlertReview).where(AlertReview.alert_id == alert))
    assert found is not None
    return found


def test_concurrent_decisions_have_one_winner(served: Served) -> None:
    for round_ in range(ROUNDS):
        alert = add_alert(served.app, served.deployment, track_id=1000 + round_)
        tries = [("olly", "confirmed"), ("omar", "not_a_match"), ("omar", "cannot_tell")]
        calls = [(login, f"/api/alerts/{alert}/decision", {"decision": decision}) for login, decision in tries]
        winner = tries[one_winner(race(served, calls))]
        stored = review(served, alert)
        assert (stored.decided_by, stored.decision) == winner
        entries = served.entries("alert.decide", f"alert:{alert}")
        assert [(e.actor, e.details["decision"]) for e in entries] == [(stored.decided_by, stored.decision)]


def test_concurrent_verifications_have_one_winner(served: Served) -> None:
    for round_ in range(ROUNDS):
        alert = add_alert(served.app, served.deployment, track_id=2000 + round_)
        assert call(served, "olly", f"/api/alerts/{alert}/decision", {"decision": "confirmed"}).status_code == 200
        one_winner(race(served, [("omar", f"/api/alerts/{alert}/verify", None)] * 3))
        assert review(served, alert).verified_by == "omar"
        assert [e.actor for e in served.entries("alert.verify", f"alert:{alert}")] == ["omar"]


def test_concurrent_outcomes_have_one_winner(served: Served) -> None:
    for round_ in range(ROUNDS):
        alert = add_alert(served.app, served.deployment, track_id=3000 + round_)
        assert call(served, "olly", f"/api/alerts/{alert}/decision", {"decision": "confirmed"}).status_code == 200
        assert call(served, "omar", f"/api/alerts/{alert}/verify").status_code == 200
        tries = [("olly", "arrested"), ("omar", "not_located")]
        calls = [(login, f"/api/alerts/{alert}/outcome", {"outcome": outcome}) for login, outcome in tries]
        winner = tries[one_winner(race(served, calls))]
        stored = review(served, alert)
        assert (stored.outcome_by, stored.outcome) == winner
        entries = served.entries("alert.outcome", f"alert:{alert}")
        assert [(e.actor, e.details["outcome"]) for e in entries] == [(stored.outcome_by, stored.outcome)]


def test_an_undo_racing_the_next_step_has_one_winner(served: Served) -> None:
    """The decider's undo and the second operator's check at once: one of them, never both (a verified decision
    that is no longer there), and one audit entry; then three undos of the same step: one undoes it."""
    for round_ in range(5):
        alert = add_alert(served.app, served.deployment, track_id=4000 + round_)
        assert call(served, "olly", f"/api/alerts/{alert}/decision", {"decision": "confirmed"}).status_code == 200
        calls: list[Call] = [("olly", f"/api/alerts/{alert}/undo", None), ("omar", f"/api/alerts/{alert}/verify", None)]
        undone = one_winner(race(served, calls)) == 0
        stored = review(served, alert)
        assert (stored.decision, stored.verified_by) == ((None, None) if undone else ("confirmed", "omar"))
        undos = served.entries("alert.decision_undone", f"alert:{alert}")
        verifications = served.entries("alert.verify", f"alert:{alert}")
        assert (len(undos), len(verifications)) == ((1, 0) if undone else (0, 1))
    alert = add_alert(served.app, served.deployment, track_id=4100)
    assert call(served, "olly", f"/api/alerts/{alert}/decision", {"decision": "not_a_match"}).status_code == 200
    one_winner(race(served, [("olly", f"/api/alerts/{alert}/undo", None)] * 3))
    assert review(served, alert).decision is None
    assert len(served.entries("alert.decision_undone", f"alert:{alert}")) == 1


def two_admins_alone(served: Served, round_: int) -> tuple[User, User]:
    """Two new administrators, with API tokens, and no other active administrator."""
    state = served.app.state.server
    with state.sessions() as db:
        pair = [
            accounts.create_user(db, state.settings, f"adm{round_:02d}{side}", PASSWORD, Role.ADMIN, "t")
            for side in "ab"
        ]
        names = [user.username for user in pair]
        db.execute(
            sa.update(User).where(User.role == Role.ADMIN.value, User.username.not_in(names)).values(active=False)
        )
        db.commit()
    for user in pair:
        served.token_for(user.username)
    return pair[0], pair[1]


@pytest.mark.parametrize(
    ("action", "path", "body"),
    [("user.disable", "disable", None), ("user.role", "role", {"role": "operator"})],
    ids=["disable", "demote"],
)
def test_two_admins_acting_on_each_other_at_once_leave_one_admin(
    served: Served, action: str, path: str, body: dict[str, Any] | None
) -> None:
    for round_ in range(ROUNDS):
        a, b = two_admins_alone(served, round_ if path == "disable" else 50 + round_)
        calls: list[Call] = [
            (a.username, f"/api/users/{b.id}/{path}", body),
            (b.username, f"/api/users/{a.id}/{path}", body),
        ]
        # The loser is refused by the rule (409), or, arriving once the winner's change is committed, no longer
        # holds a session (401).
        winner = one_winner(race(served, calls), losers=(401, 409))
        admins = served.scalar(
            sa.select(sa.func.count()).select_from(User).where(User.role == Role.ADMIN.value, User.active.is_(True))
        )
        assert admins == 1
        entries = served.entries(action, f"user:{a.username}", f"user:{b.username}")
        assert [e.actor for e in entries] == [calls[winner][0]]
    # The one administrator left cannot be disabled or demoted by anyone, at the command line either.
    state = served.app.state.server
    with state.sessions() as db:
        last = db.scalars(sa.select(User).where(User.role == Role.ADMIN.value, User.active.is_(True))).one()
        with pytest.raises(TransitionRefused, match="last active administrator"):
            accounts.disable(db, Context.local(state.settings, "root"), last)
        with pytest.raises(TransitionRefused, match="last active administrator"):
            accounts.change_role(db, Context.local(state.settings, "root"), last, Role.AUDITOR)


def test_a_hold_racing_the_probe_purge_keeps_the_probe_exactly_when_held(served: Served) -> None:
    """An authoriser holds an alert for an investigation just as retention purges its (overdue) probe image: either
    the hold wins and the probe stays, or the purge wins and the hold is refused; never held with the probe gone."""
    state = served.app.state.server
    served.token_for("ava")

    def sweep(barrier: threading.Barrier) -> PurgeReport:
        barrier.wait(timeout=60)
        return enforce_once(state.store, state.settings)

    overdue = utc_now() - timedelta(seconds=state.settings.probe_retention_seconds) - timedelta(days=1)
    for round_ in range(ROUNDS):
        alert = add_alert(served.app, served.deployment, track_id=5000 + round_, when=overdue)
        hold = post(served, "ava", f"/api/alerts/{alert}/hold", {"reason": f"Operation Falcon, round {round_}"})
        status, report = at_once([hold, sweep])
        stored = review(served, alert)
        probe = served.scalar(sa.select(Alert.probe_jpeg).where(Alert.id == alert))
        holds = served.entries("alert.hold", f"alert:{alert}")
        if status == 200:
            assert (stored.held_by, stored.probe_purged_at, probe is not None) == ("ava", None, True)
            assert alert not in report.probes_purged and [e.actor for e in holds] == ["ava"]
        else:
            assert status == 409, status
            assert (stored.held_by, stored.probe_purged_at is not None, probe) == (None, True, None)
            assert alert in report.probes_purged and holds == []


def test_the_audit_log_is_intact_after_the_races(served: Served) -> None:
    """Every race appended to one chain, dated in the order written (``audit verify`` checks that as well)."""
    headers = {"Authorization": f"Bearer {served.tokens['aud']}"}
    answer = httpx.get(served.url + "/api/audit/verify", headers=headers, timeout=60)
    assert answer.status_code == 200 and answer.json()["ok"], answer.text
    newest_first = httpx.get(served.url + "/api/audit?limit=1000", headers=headers, timeout=60).json()
    times = [datetime.fromisoformat(entry["at"]) for entry in reversed(newest_first)]
    assert times and times == sorted(times)
    assert all(entry["clock_at"] is not None for entry in newest_first)
