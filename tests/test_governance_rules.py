"""The governance rules as pure functions: deployment states, may_match, adjudication, retention, audit chain."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from openlfr.governance import adjudication, audit, deployments, records, retention
from openlfr.governance.adjudication import Decision, Outcome
from openlfr.governance.deployments import Phase, Status, TransitionRefused, may_match, phase
from openlfr.governance.roles import Role

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
REASON = "Wanted offenders are known to frequent this station on match days."


@dataclass
class D:
    status: str = Status.DRAFT.value
    created_by: str = "alice"
    authorised_by: str | None = None
    starts_at: datetime = T0
    ends_at: datetime = T0 + 4 * HOUR
    ended_at: datetime | None = None
    cancelled_at: datetime | None = None
    snapshot_destroyed_at: datetime | None = None
    kind: str = "live"
    urgent_until: datetime | None = None


def apply(d: D, changes: dict[str, Any]) -> D:
    return replace(d, **{k: v for k, v in changes.items() if k in D.__dataclass_fields__})


def authorised(**kw: Any) -> D:
    return apply(D(**kw), deployments.authorise(D(**kw), "bob", Role.AUTHORISER, REASON, T0 - HOUR))


def test_may_match_refuses_every_state_but_live() -> None:
    draft = D()
    live = authorised()
    assert not may_match(None, T0)
    assert "draft" in may_match(draft, T0 + HOUR).reason
    assert not may_match(live, T0 - timedelta(seconds=1))  # not yet started
    assert may_match(live, T0)  # the window opens inclusively
    assert may_match(live, T0 + 4 * HOUR - timedelta(microseconds=1))
    assert not may_match(live, T0 + 4 * HOUR)  # and closes exclusively
    cancelled = apply(live, deployments.cancel(live, "bob", "intelligence changed", T0 + HOUR))
    assert "cancelled" in may_match(cancelled, T0 + 2 * HOUR).reason
    ended = apply(live, deployments.end(live, "carol", T0 + HOUR))
    assert "ended" in may_match(ended, T0 + 2 * HOUR).reason
    # A row edited behind the application's back stays refused.
    assert not may_match(replace(draft, status=Status.AUTHORISED.value), T0 + HOUR)
    assert not may_match(replace(live, authorised_by="alice"), T0 + HOUR)
    assert not may_match(replace(live, snapshot_destroyed_at=T0), T0 + HOUR)


def test_authorisation_rules() -> None:
    d = D()
    with pytest.raises(TransitionRefused, match="author"):
        deployments.authorise(d, "alice", Role.AUTHORISER, REASON, T0)
    with pytest.raises(TransitionRefused, match="only an authoriser"):
        deployments.authorise(d, "bob", Role.ADMIN, REASON, T0)
    with pytest.raises(TransitionRefused, match="justification"):
        deployments.authorise(d, "bob", Role.AUTHORISER, "ok", T0)
    with pytest.raises(TransitionRefused, match="closed"):
        deployments.authorise(d, "bob", Role.AUTHORISER, REASON, T0 + 5 * HOUR)
    live = authorised()
    assert live.authorised_by == "bob"
    with pytest.raises(TransitionRefused, match="only a draft"):
        deployments.authorise(live, "dave", Role.AUTHORISER, REASON, T0)
    assert phase(live, T0 - HOUR) is Phase.SCHEDULED
    assert phase(live, T0 + HOUR) is Phase.LIVE
    assert phase(live, T0 + 5 * HOUR) is Phase.ENDED
    assert deployments.close_if_over(live, T0 + 5 * HOUR)["ended_at"] == T0 + 4 * HOUR
    assert deployments.close_if_over(live, T0 + HOUR) == {}
    with pytest.raises(TransitionRefused):
        deployments.end(live, "carol", T0 - HOUR)  # not started: cancel instead
    with pytest.raises(deployments.GovernanceError):
        deployments.validate_draft(T0, T0, ["cam"], "x", "y")


def test_adjudication_requires_a_second_operator() -> None:
    @dataclass
    class R:
        decision: str | None = None
        decided_by: str | None = None
        verified_by: str | None = None
        outcome: str | None = None

    review = R()
    with pytest.raises(TransitionRefused, match="only an operator"):
        adjudication.decide(review, "x", Role.AUTHORISER, Decision.CONFIRMED, T0)
    review = R(
        **{
            k: v
            for k, v in adjudication.decide(review, "op1", Role.OPERATOR, Decision.CONFIRMED, T0).items()
            if k in ("decision", "decided_by")
        }
    )
    with pytest.raises(TransitionRefused, match="already decided"):
        adjudication.decide(review, "op2", Role.OPERATOR, Decision.NOT_A_MATCH, T0)
    with pytest.raises(TransitionRefused, match="second operator"):
        adjudication.record_outcome(review, "op1", Role.OPERATOR, Outcome.ARRESTED, True, T0)
    with pytest.raises(TransitionRefused, match="different operator"):
        adjudication.verify(review, "op1", Role.OPERATOR, T0)
    review.verified_by = adjudication.verify(review, "op2", Role.OPERATOR, T0)["verified_by"]
    assert adjudication.stage(review, True) == "awaiting outcome"
    review.outcome = adjudication.record_outcome(review, "op1", Role.OPERATOR, Outcome.ARRESTED, True, T0)["outcome"]
    assert adjudication.stage(review, True) == "closed"
    # Without the setting an outcome can follow the decision directly; never after "not a match".
    assert adjudication.record_outcome(R("confirmed", "op1"), "op1", Role.OPERATOR, Outcome.NOT_LOCATED, False, T0)
    with pytest.raises(TransitionRefused, match="confirmed"):
        adjudication.record_outcome(R("not_a_match", "op1"), "op1", Role.OPERATOR, Outcome.NOT_LOCATED, False, T0)


def test_retention_deadlines() -> None:
    policy = retention.RetentionPolicy.from_seconds(2, 5)
    live = authorised()
    assert retention.snapshot_destroy_at(D(), policy) is None  # a draft never had a snapshot
    assert not retention.snapshot_due(live, policy, T0 + 4 * HOUR + timedelta(seconds=1))
    assert retention.snapshot_due(live, policy, T0 + 4 * HOUR + timedelta(seconds=2))
    ended_early = apply(live, deployments.end(live, "carol", T0 + HOUR))
    assert retention.snapshot_due(ended_early, policy, T0 + HOUR + timedelta(seconds=2))
    assert not retention.snapshot_due(replace(ended_early, snapshot_destroyed_at=T0), policy, T0 + 9 * HOUR)
    assert retention.probe_due(T0, False, policy, T0 + timedelta(seconds=5))
    assert not retention.probe_due(T0, False, policy, T0 + timedelta(seconds=4))
    assert not retention.probe_due(T0, True, policy, T0 + 100 * HOUR)  # held for an investigation
    assert retention.RetentionPolicy().snapshot_ttl == timedelta(hours=24)
    assert retention.RetentionPolicy().probe_ttl == timedelta(days=31)
    # expired watchlist entries: removed once the grace period after expiry has passed, not before
    assert not retention.expired_entry_due(T0, policy, T0 + timedelta(days=7) - timedelta(seconds=1))
    assert retention.expired_entry_due(T0, policy, T0 + timedelta(days=7))
    assert retention.expired_entry_due(T0, retention.RetentionPolicy.from_seconds(2, 5, 60), T0 + timedelta(minutes=1))
    with pytest.raises(ValueError):
        retention.RetentionPolicy.from_seconds(2, 5, -1)


@dataclass
class E:
    seq: int
    at: datetime
    actor: str
    role: str
    action: str
    target: str
    details: dict[str, Any] = field(default_factory=dict)
    prev_hash: str = ""
    hash: str = ""
    clock_at: datetime | None = None


KEY = b"k" * 32


def chain(n: int) -> list[E]:
    out: list[E] = []
    prev = audit.GENESIS
    for seq in range(1, n + 1):
        e = E(seq, T0 + timedelta(seconds=seq), "alice", "operator", "alert.decide", f"alert:{seq}", {"d": seq})
        e.prev_hash = prev
        e.hash = audit.hash_of(e, KEY)
        prev = e.hash
        out.append(e)
    return out


def head(entries: list[E]) -> tuple[int, str]:
    return (entries[-1].seq, entries[-1].hash)


def test_audit_chain_names_the_first_broken_entry() -> None:
    good = chain(6)
    assert audit.verify_chain(good, KEY, head(good)).ok
    assert not audit.verify_chain(good, b"another key", head(good)).ok

    edited = chain(6)
    edited[3].details = {"d": "changed"}
    verdict = audit.verify_chain(edited, KEY, head(good))
    assert (verdict.first_bad_seq, verdict.problem) == (4, "altered")

    removed = chain(6)
    del removed[2]
    verdict = audit.verify_chain(removed, KEY, head(good))
    assert (verdict.first_bad_seq, verdict.problem) == (3, "removed")

    truncated = chain(6)[:4]
    verdict = audit.verify_chain(truncated, KEY, head(good))
    assert (verdict.first_bad_seq, verdict.problem) == (5, "removed")

    forged = chain(6)
    fake = replace(forged[2], actor="mallory", hash="f" * 64)
    renumbered = [*forged[:2], fake, *[replace(e, seq=e.seq + 1) for e in forged[2:]]]
    verdict = audit.verify_chain(renumbered, KEY, head(good))
    assert (verdict.first_bad_seq, verdict.problem) == (3, "inserted")

    appended = [*chain(6), E(7, T0, "mallory", "admin", "x", "y", {}, good[-1].hash, "0" * 64)]
    verdict = audit.verify_chain(appended, KEY, head(good))
    assert (verdict.first_bad_seq, verdict.problem) == (7, "inserted")

    duplicated = chain(6)
    duplicated.insert(4, duplicated[1])
    verdict = audit.verify_chain(duplicated, KEY, head(good))
    assert verdict.problem == "inserted"


def rehashed_from(entries: list[E], index: int) -> list[E]:
    """The chain re-hashed with the key from ``index`` on, as its key holder could after changing an entry."""
    for at in range(index, len(entries)):
        entries[at].prev_hash = entries[at - 1].hash if at else audit.GENESIS
        entries[at].hash = audit.hash_of(entries[at], KEY)
    return entries


def test_audit_time_runs_forward_and_verify_names_a_backdated_entry() -> None:
    assert audit.chain_time(T0, None) == T0
    assert audit.chain_time(T0 - HOUR, T0) == T0  # the clock set back: the previous entry's date
    assert audit.chain_time(T0 + HOUR, T0) == T0 + HOUR
    backdated = chain(6)
    backdated[3].at = backdated[2].at - timedelta(microseconds=1)
    verdict = audit.verify_chain(rehashed_from(backdated, 3), KEY, head(backdated))
    assert (verdict.ok, verdict.first_bad_seq, verdict.problem) == (False, 4, "backdated")
    assert "before entry 3" in verdict.message
    same_time = chain(6)
    same_time[3].at = same_time[2].at  # two entries at one instant are in order
    assert audit.verify_chain(rehashed_from(same_time, 3), KEY, head(same_time)).ok


def test_an_anchor_catches_a_cut_that_the_head_was_set_back_to_hide() -> None:
    good = chain(6)
    anchor = head(good)
    assert audit.verify_anchor(good, anchor).ok
    cut = good[:4]  # the last two removed and the head set back to the fourth: the chain alone looks intact
    assert audit.verify_chain(cut, KEY, head(cut)).ok
    verdict = audit.verify_anchor(cut, anchor)
    assert (verdict.ok, verdict.first_bad_seq, verdict.problem) == (False, 6, "removed")
    verdict = audit.verify_anchor(good, (6, "0" * 64))
    assert (verdict.ok, verdict.problem) == (False, "altered")
    assert audit.parse_anchor(f" 6:{good[5].hash}\n") == anchor
    for text in ("6", "x:" + "0" * 64, "0:" + "0" * 64, "6:" + "Z" * 64, "6:abc"):
        with pytest.raises(ValueError):
            audit.parse_anchor(text)


def test_record_counts_and_csv_is_spreadsheet_safe() -> None:
    rec = records.build_record(
        1,
        "=cmd|' /C calc'!A0",
        "King's Cross",
        "wanted offenders",
        "ended",
        T0,
        T0 + 4 * HOUR,
        T0 + 2 * HOUR,
        watchlist_size=9,
        faces_seen=20000,
        reviews=[
            ("confirmed", "op2", "arrested"),
            ("not_a_match", None, None),
            ("cannot_tell", None, None),
            (None, None, None),
        ],
    )
    assert (rec.alerts, rec.confirmed, rec.false_alerts, rec.cannot_tell, rec.undecided) == (4, 1, 1, 1, 1)
    assert (rec.arrested, rec.verified, rec.duration_minutes) == (1, 1, 120)
    assert rec.false_alert_one_in == "1 in 20,000"
    text = records.records_csv([rec])
    assert text.splitlines()[0].startswith("deployment_id,name,date,place")
    assert "'=cmd" in text
