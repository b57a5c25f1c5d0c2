"""Helpers for the operator server's tests: an app on a fresh store, accounts, logged-in clients, a watchlist,
a live uvicorn server for tests that need real HTTP (server-sent events, the browser)."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from openlfr.governance.roles import Role
from openlfr.services import accounts
from openlfr.settings import Settings
from openlfr.vision.engine import model_id_for
from openlfr.vision.mobilefacenet import DIMENSION as MOBILEFACENET_DIMENSION
from openlfr.vision.mobilefacenet import MOBILEFACENET_ID
from tests.waitkit import hang_guard

PASSWORD = "correct-horse-battery-staple"
# Filler references are random vectors of the default embedding model, so deployments built on them use the model
# a real enrolment would.
MODEL_ID = model_id_for(Settings())
MODEL_DIMENSION = MOBILEFACENET_DIMENSION if MODEL_ID.startswith(MOBILEFACENET_ID) else 128
# argon2id at a low cost: the same code path, a test suite that does not spend seconds per login.
FAST_HASHING = {"OPENLFR_ARGON2_MEMORY_KIB": "1024", "OPENLFR_ARGON2_TIME_COST": "1", "OPENLFR_ARGON2_PARALLELISM": "1"}


def configure(monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    from openlfr.settings import get_settings

    for key, value in {**FAST_HASHING, **extra}.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()


def build_app(background: bool = False, pipelines: bool = False) -> FastAPI:
    from openlfr.server import create_app
    from openlfr.settings import get_settings

    return create_app(get_settings(), background=background, pipelines=pipelines)


def add_user(app: FastAPI, username: str, role: Role) -> None:
    state = app.state.server
    with state.sessions() as db:
        accounts.create_user(db, state.settings, username, PASSWORD, role, "test")
        db.commit()


# The tests' cast, by login: who may do what is in the name's role.
CAST = {
    "ann": Role.ADMIN,
    "olly": Role.OPERATOR,
    "omar": Role.OPERATOR,
    "ava": Role.AUTHORISER,
    "abe": Role.AUTHORISER,
    "aud": Role.AUDITOR,
}


def add_cast(app: FastAPI, *logins: str) -> None:
    """Accounts for these members of ``CAST`` (all of them when none is named), with their roles."""
    for login in logins or tuple(CAST):
        add_user(app, login, CAST[login])


def bearer_token(app: FastAPI, username: str, days: float = 1.0) -> str:
    """An API token for the account (``Authorization: Bearer ...``), for clients of a server in another process."""
    from openlfr.services.context import Context
    from openlfr.store.governance_models import User

    state = app.state.server
    with state.sessions() as db:
        user = db.query(User).filter_by(username=username).one()
        token = accounts.issue_token(db, Context.local(state.settings, "test"), user, days)
        db.commit()
    return token


class Client:
    """A logged-in browser-like client: cookie session, and the CSRF header on every write."""

    def __init__(self, http: TestClient, csrf: str, username: str) -> None:
        self.http, self.csrf, self.username = http, csrf, username

    def get(self, url: str, **kw: Any) -> Any:
        return self.http.get(url, **kw)

    def request(self, method: str, url: str, **kw: Any) -> Any:
        headers = {"X-CSRF-Token": self.csrf, **kw.pop("headers", {})}
        return self.http.request(method, url, headers=headers, **kw)

    def post(self, url: str, **kw: Any) -> Any:
        return self.request("POST", url, **kw)


def login_form_token(http: TestClient) -> str:
    page = http.get("/login")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


def login(app: FastAPI, username: str, password: str = PASSWORD) -> Client:
    http = TestClient(app, follow_redirects=False)
    token = login_form_token(http)
    answer = http.post("/login", data={"username": username, "password": password, "csrf_token": token})
    assert answer.status_code == 303, answer.text
    me = http.get("/api/me").json()
    return Client(http, me["csrf_token"], username)


def add_watchlist(app: FastAPI, name: str = "wanted", people: int = 3, images_each: int = 2, seed: int = 0) -> None:
    """A watchlist written straight into the store (enrolment has its own tests): random unit embeddings."""
    from openlfr.store.models import Person, Watchlist
    from tests.storekit import reference_image_row

    rng = np.random.default_rng(seed)
    now = datetime.now(UTC)
    with app.state.server.sessions() as db:
        watchlist = Watchlist(name=name, purpose="tests", created_by="test", created_at=now)
        db.add(watchlist)
        for p in range(people):
            person = Person(
                watchlist=watchlist,
                reference_id=f"P{p:03d}",
                display_name=f"Person {p}",
                category="wanted_offence",
                reason=f"wanted for test offence {p}",
                legal_basis="test",
                added_by="test",
                added_at=now,
                expires_at=now + timedelta(days=30),
            )
            db.add(person)
            for i in range(images_each):
                vector = rng.normal(size=MODEL_DIMENSION).astype(np.float32)
                person.images.append(
                    reference_image_row(
                        vector / np.linalg.norm(vector), MODEL_ID, f"{p:04d}{i:060d}", source=f"p{p}_{i}.jpg"
                    )
                )
        db.commit()


def enrol_upload(
    client: Any, watchlist: str, person: str, name: str, paths: list[Path], category: str = "wanted_offence"
) -> None:
    """Enrol a person through the upload API, as the console does."""
    files = [("images", (p.name, p.read_bytes())) for p in paths]
    form = {"person": person, "display_name": name, "category": category, "reason": f"test listing of {name}"}
    answer = client.post(f"/api/watchlists/{watchlist}/people", data=form, files=files)
    assert answer.status_code == 201, answer.text


def clip_deployment_body(clip: Path, watchlist: str, minutes: float = 10.0) -> dict[str, Any]:
    """A deployment of one video file as its camera, live from a second ago."""
    start = datetime.now(UTC) - timedelta(seconds=1)
    return {
        "name": "Hamilton clip",
        "place": "Theatre foyer",
        "purpose": f"Find the people on the {watchlist} watchlist",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(minutes=minutes)).isoformat(),
        "cameras": [{"name": "stage", "source": str(clip)}],
        "watchlist": watchlist,
        "target_fpir": 1e-4,
    }


def draft_body(start: datetime, hours: float = 2.0, watchlist: str = "wanted", **extra: Any) -> dict[str, Any]:
    return {
        "name": "High street",
        "place": "High Street, outside the station",
        "purpose": "Locate people wanted for violent offences",
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=hours)).isoformat(),
        "cameras": [{"name": "entrance", "source": "rtsp://127.0.0.1:8554/cam"}],
        "watchlist": watchlist,
        "threshold": 0.6,
        **extra,
    }


JUSTIFICATION = "Intelligence shows wanted offenders frequent this station; less intrusive means have failed."


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LiveServer:
    """The app under a real uvicorn on 127.0.0.1, in a thread; stopped when the test ends."""

    def __init__(self, app: FastAPI) -> None:
        import uvicorn

        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + hang_guard(20)  # the lifespan's start-up takes a while on a busy machine
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


def live_server(app: FastAPI) -> Iterator[LiveServer]:
    with LiveServer(app) as running:
        yield running


def add_alert(
    app: FastAPI,
    deployment_id: int,
    person_ref: str = "P001",
    score: float = 0.8,
    when: datetime | None = None,
    track_id: int = 7,
    camera: str = "entrance",
) -> int:
    """An alert as the live pipeline commits it (for tests of what happens next), pointing at a snapshot image."""
    import uuid

    import sqlalchemy as sa

    from openlfr.store.alert_models import Alert
    from openlfr.store.governance_models import SnapshotImage, SnapshotPerson

    seen = when or datetime.now(UTC)
    with app.state.server.sessions() as db:
        reference = db.scalar(
            sa.select(SnapshotImage.id)
            .join(SnapshotPerson, SnapshotPerson.id == SnapshotImage.person_id)
            .where(SnapshotPerson.deployment_id == deployment_id, SnapshotPerson.person_ref == person_ref)
        )
        alert = Alert(
            uid=str(uuid.uuid4()),
            created_at=seen,
            seen_at=seen,
            deployment_id=deployment_id,
            watchlist_name="wanted",
            camera=camera,
            track_id=track_id,  # one alert per (deployment, camera, track, person)
            person_ref=person_ref,
            person_name=f"Person {int(person_ref[1:])}",
            reference_image_id=reference,
            score=score,
            threshold=0.6,
            model_id=MODEL_ID,
            candidates=[{"person": person_ref, "name": "x", "reference_image_id": reference, "score": score}],
            evidence={"samples": 3, "supporting": 2},
            probe_jpeg=b"\xff\xd8\xff\xe0probe",
        )
        db.add(alert)
        db.commit()
        return alert.id
