"""The shape of the JSON API: every endpoint declares what it answers (a response model, or a file type), and the
answers keep the keys clients rely on. The keys below are written out by hand, independently of the models."""

from __future__ import annotations

from dataclasses import is_dataclass
from datetime import UTC, datetime, timedelta
from typing import get_args, get_origin

import pytest
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel

from openlfr.governance.roles import Role
from tests.serverkit import JUSTIFICATION, add_alert, add_user, add_watchlist, build_app, configure, draft_body, login

DEPLOYMENT_KEYS = {
    "id", "name", "place", "purpose", "starts_at", "ends_at", "cameras", "watchlist", "threshold", "target_fpir",
    "status", "phase", "created_by", "authorised_by", "authorised_at", "justification", "cancelled_by",
    "cancel_reason", "ended_at", "effective_threshold", "threshold_note", "watchlist_size", "snapshot_destroyed_at",
    "frames", "faces_seen", "alerts_raised", "may_match", "may_match_reason",
    "kind", "urgent_until", "urgent_reason", "authorisation_lapsed_at", "media_seconds", "media_done_seconds",
    "processing_started_at", "processing_finished_at", "progress", "coverage", "media_frames", "sinks",
    "camera_states",
}  # fmt: skip
REVIEW_KEYS = {
    "alert_id", "deployment_id", "alert_at", "person_ref", "decision", "decided_by", "verified_by", "outcome",
    "outcome_by", "held_by", "probe_purged_at", "stage",
    # issue 20 item 2: when each step was taken, its note, and until when the caller may undo the latest
    "decided_at", "decision_note", "verified_at", "verification_note", "outcome_at", "outcome_note", "undo_until",
}  # fmt: skip
ALERT_KEYS = REVIEW_KEYS | {
    "camera", "track", "score", "person_name", "category", "reason", "candidates", "has_probe", "has_reference",
    "kind", "footage", "media_time", "media_file", "media_started_at", "media_at",
    "false_match_rate", "false_match_extrapolated", "looks", "references",  # issue 20 item 2
    "seen_rejected",  # issue 22
}  # fmt: skip


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    configure(monkeypatch)
    application = build_app()
    for name, role in [("ann", Role.ADMIN), ("olly", Role.OPERATOR), ("ava", Role.AUTHORISER)]:
        add_user(application, name, role)
    add_watchlist(application)
    yield application
    application.state.server.store.close()


def api_routes(app) -> list[APIRoute]:  # type: ignore[no-untyped-def]
    found: list[APIRoute] = []

    def walk(routes: list[object]) -> None:
        for route in routes:
            if isinstance(route, APIRoute) and route.path.startswith("/api/"):
                found.append(route)
            elif hasattr(route, "original_router"):
                walk(route.original_router.routes)

    walk(app.routes)
    return found


def test_every_endpoint_declares_what_it_answers(app) -> None:  # type: ignore[no-untyped-def]
    routes = api_routes(app)
    assert len(routes) > 30

    def answers_json(route: APIRoute) -> bool:
        answer_class = getattr(route.response_class, "value", route.response_class)  # unwrap FastAPI's default
        return issubclass(answer_class, JSONResponse)

    def modelled(route: APIRoute) -> bool:
        """A pydantic model or a dataclass, or a list of one: not a bare dict or Any."""
        model = route.response_model
        if get_origin(model) is list:
            (model,) = get_args(model)
        return isinstance(model, type) and (issubclass(model, BaseModel) or is_dataclass(model))

    untyped = [f"{sorted(r.methods)} {r.path}" for r in routes if answers_json(r) and not modelled(r)]
    assert not untyped, f"JSON endpoints without a response model: {untyped}"
    schema = app.openapi()
    for route in routes:
        for method in route.methods:
            answers = schema["paths"][route.path_format][method.lower()]["responses"]  # the document drops converters
            success = answers[str(route.status_code or 200)]
            assert success.get("content"), f"{method} {route.path} documents no answer"


def test_answers_keep_their_keys(app) -> None:  # type: ignore[no-untyped-def]
    olly, ava, ann = login(app, "olly"), login(app, "ava"), login(app, "ann")
    drafted = olly.post("/api/deployments", json=draft_body(datetime.now(UTC) - timedelta(minutes=1)))
    assert drafted.status_code == 201, drafted.text
    assert set(drafted.json()) == DEPLOYMENT_KEYS
    deployment = drafted.json()["id"]
    authorised = ava.post(f"/api/deployments/{deployment}/authorise", json={"justification": JUSTIFICATION}).json()
    assert set(authorised) == DEPLOYMENT_KEYS
    assert (authorised["watchlist"], authorised["phase"], authorised["may_match"]) == ("wanted", "live", True)
    assert authorised["may_match_reason"] == "live and authorised"

    alert = add_alert(app, deployment)
    listed = olly.get("/api/alerts").json()
    assert [set(a) for a in listed] == [ALERT_KEYS]
    assert (listed[0]["stage"], listed[0]["person_name"], listed[0]["camera"]) == (
        "awaiting decision",
        "Person 1",
        "entrance",
    )
    decided = olly.post(f"/api/alerts/{alert}/decision", json={"decision": "not_a_match"}).json()
    assert set(decided) == REVIEW_KEYS and decided["stage"] == "closed"

    assert olly.get("/api/me").json().keys() == {"username", "role", "csrf_token"}
    assert olly.get("/api/me").json()["role"] == "operator"
    assert olly.get("/api/watchlists").json() == [
        {"name": "wanted", "purpose": "tests", "people": 3, "active_people": 3}
    ]
    assert ann.get("/api/settings").json() == {"require_second_verifier": True}
    retention = ann.post("/api/retention/run").json()
    assert retention.keys() == {
        "snapshots_destroyed",
        "probes_purged",
        "expired_entries_removed",
        "search_probes_purged",
    }
