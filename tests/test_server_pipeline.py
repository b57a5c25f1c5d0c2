"""The pipeline refuses to match outside an authorised, live deployment — checked at three places: the
scheduler (which deployments get a pipeline at all), the guard every frame asks, and the gallery searched.
One test runs the real camera pipeline on the Hamilton clip: no alert for a draft, an alert once authorised."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from openlfr.governance.guard import GuardedGallery, MatchGuard
from openlfr.governance.roles import Role
from openlfr.store.governance_models import Deployment
from tests.conftest import require_data
from tests.serverkit import JUSTIFICATION, add_user, add_watchlist, build_app, configure, draft_body, login

NOW = datetime.now(UTC)
HOUR = timedelta(hours=1)


def deployment_row(state: str) -> dict[str, Any]:
    """Fields of a deployment in each state the rules must refuse, and of one that is live."""
    authorised = {"status": "authorised", "authorised_by": "ava", "authorised_at": NOW - 2 * HOUR}
    return {
        "draft": {"status": "draft", "starts_at": NOW - HOUR, "ends_at": NOW + HOUR},
        "unauthorised": {"status": "authorised", "starts_at": NOW - HOUR, "ends_at": NOW + HOUR},  # no authoriser
        "self-authorised": {**authorised, "authorised_by": "olly", "starts_at": NOW - HOUR, "ends_at": NOW + HOUR},
        "cancelled": {
            **authorised,
            "status": "cancelled",
            "cancelled_at": NOW - HOUR / 2,
            "starts_at": NOW - HOUR,
            "ends_at": NOW + HOUR,
        },
        "not-yet-started": {**authorised, "starts_at": NOW + HOUR, "ends_at": NOW + 2 * HOUR},
        "ended": {
            **authorised,
            "status": "ended",
            "ended_at": NOW - HOUR / 2,
            "starts_at": NOW - HOUR,
            "ends_at": NOW + HOUR,
        },
        "window-closed": {**authorised, "starts_at": NOW - 2 * HOUR, "ends_at": NOW - HOUR},
        "snapshot-destroyed": {
            **authorised,
            "starts_at": NOW - HOUR,
            "ends_at": NOW + HOUR,
            "snapshot_destroyed_at": NOW - HOUR / 4,
        },
        "live": {**authorised, "starts_at": NOW - HOUR, "ends_at": NOW + HOUR},
    }[state]


REFUSED = [
    "draft",
    "unauthorised",
    "self-authorised",
    "cancelled",
    "not-yet-started",
    "ended",
    "window-closed",
    "snapshot-destroyed",
]


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    configure(monkeypatch)
    application = build_app()
    yield application
    application.state.server.store.close()


def insert(app, state: str) -> int:  # type: ignore[no-untyped-def]
    with app.state.server.sessions() as db:
        row = Deployment(
            name=state,
            place="p",
            purpose="p",
            cameras=[{"name": "c", "source": "rtsp://h/s"}],
            watchlist_name="w",
            threshold=0.5,
            created_by="olly",
            snapshot_taken_at=NOW - 2 * HOUR,
            watchlist_size=1,
            **deployment_row(state),
        )
        db.add(row)
        db.commit()
        return int(row.id)


class CountingGallery:
    model_id = "m"

    def __init__(self) -> None:
        self.searches = 0

    def search(self, probes: np.ndarray, k: int = 5) -> list[list[str]]:
        self.searches += 1
        return [["someone"] for _ in range(len(probes))]


@pytest.mark.parametrize("state", [*REFUSED, "live"])
def test_guard_and_gallery_refuse_every_state_but_live(app, state: str) -> None:  # type: ignore[no-untyped-def]
    deployment_id = insert(app, state)

    def load() -> Deployment | None:
        with app.state.server.sessions() as db:
            return db.get(Deployment, deployment_id)

    guard = MatchGuard(load)
    inner = CountingGallery()
    gallery = GuardedGallery(inner, guard)
    found = gallery.search(np.ones((2, 128), np.float32))
    if state == "live":
        assert guard.permission().allowed and found == [["someone"], ["someone"]] and inner.searches == 1
    else:
        assert not guard.permission().allowed
        assert found == [[], []] and inner.searches == 0  # the watchlist was never compared
        assert gallery.best_scores(np.ones((1, 128), np.float32)).tolist() == [0.0]
    assert gallery.model_id == "m"  # facts about the watchlist still read through


def test_guard_sees_a_cancellation_within_its_refresh(app) -> None:  # type: ignore[no-untyped-def]
    deployment_id = insert(app, "live")

    def load() -> Deployment | None:
        with app.state.server.sessions() as db:
            return db.get(Deployment, deployment_id)

    guard = MatchGuard(load, refresh_s=0.0)
    assert guard.permission().allowed
    with app.state.server.sessions() as db:
        row = db.get(Deployment, deployment_id)
        assert row is not None
        row.status, row.cancelled_at = "cancelled", datetime.now(UTC)
        db.commit()
    assert not guard.permission().allowed
    broken = MatchGuard(lambda: (_ for _ in ()).throw(RuntimeError("database down")))
    assert not broken.permission().allowed  # cannot read the deployment: refuse


def test_scheduler_runs_only_live_deployments(app) -> None:  # type: ignore[no-untyped-def]
    from openlfr.runtime.scheduler import Scheduler

    ids = {state: insert(app, state) for state in [*REFUSED, "live"]}
    scheduler = Scheduler(app.state.server.store, app.state.server.settings, app.state.server.tiles)
    assert scheduler.live_deployments() == {ids["live"]}


@pytest.mark.data
@pytest.mark.slow
def test_camera_pipeline_on_the_hamilton_clip_matches_only_when_live(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real pipeline on real frames: the draft's run compares nobody; authorised, Lin-Manuel Miranda alerts."""
    clip = require_data("video", "short_hamilton_clip.mp4")
    still = require_data("stills", "lin-manuel-miranda.png")
    pytest.importorskip("openlfr.stream.pipeline", reason="live pipeline (issue 4) not installed")
    configure(monkeypatch)
    app = build_app()
    add_user(app, "olly", Role.OPERATOR)
    add_user(app, "ava", Role.AUTHORISER)
    add_watchlist(app, name="filler", people=3, images_each=1)
    from openlfr.runtime.deployment_run import DeploymentRun
    from openlfr.services.live import snapshot_watchlist as load_snapshot
    from openlfr.settings import StreamSettings
    from openlfr.stream.evidence import EvidenceRule
    from openlfr.stream.pipeline import CameraPipeline
    from openlfr.stream.source import CameraConfig, Capture
    from openlfr.vision.engine import build_engine
    from openlfr.vision.image_io import load_rgb
    from tests.streamkit import yuv_frames

    engine = build_engine(app.state.server.settings)
    _enrol_embedding(app, "filler", "LMM", "Lin-Manuel Miranda", engine.faces(load_rgb(still, 60_000_000))[0])
    olly, ava = login(app, "olly"), login(app, "ava")
    body = draft_body(datetime.now(UTC) - timedelta(seconds=5), watchlist="filler")
    body["cameras"] = [{"name": "stage", "source": str(clip)}]
    draft = olly.post("/api/deployments", json=body).json()

    def run_clip(deployment_id: int, gallery: Any, threshold: float) -> tuple[list[Any], int]:
        run = DeploymentRun(app.state.server.store, app.state.server.settings, deployment_id, app.state.server.tiles)
        counting = _Counting(gallery)
        guarded = GuardedGallery(counting, run.guard)
        pipeline = CameraPipeline(
            CameraConfig("stage", str(clip)),
            StreamSettings(),
            engine,
            engine.detector,
            guarded,
            EvidenceRule(threshold=threshold),
            may_match=run.guard.__bool__,
        )
        alerts = []
        for yuv, captured in yuv_frames(Capture(CameraConfig("stage", str(clip))).frames()):
            alerts += pipeline.process(yuv, captured.clock, captured.arrival).alerts
        return alerts, counting.searches

    # The draft has no snapshot yet: give its run the same gallery the authorised one will get.
    authorised = ava.post(f"/api/deployments/{draft['id']}/authorise", json={"justification": JUSTIFICATION}).json()
    snapshot = load_snapshot(app.state.server.store, authorised["id"], app.state.server.settings)
    # The deployment's search options reach its gallery (here: an index even for a handful of references).
    indexed_settings = app.state.server.settings.model_copy(update={"search_approximate_above": 1})
    assert load_snapshot(app.state.server.store, authorised["id"], indexed_settings).gallery.uses_index
    assert not snapshot.gallery.uses_index
    with app.state.server.sessions() as db:  # put it back to draft, as if never authorised
        row = db.get(Deployment, authorised["id"])
        assert row is not None
        row.status, row.authorised_by = "draft", None
        db.commit()
    alerts, searches = run_clip(authorised["id"], snapshot.gallery, snapshot.threshold)
    assert alerts == [] and searches == 0
    with app.state.server.sessions() as db:
        row = db.get(Deployment, authorised["id"])
        assert row is not None
        row.status, row.authorised_by = "authorised", "ava"
        db.commit()
    alerts, searches = run_clip(authorised["id"], snapshot.gallery, snapshot.threshold)
    assert searches > 0 and [str(a.person_id) for a in alerts] == ["LMM"]
    app.state.server.store.close()


class _Counting:
    def __init__(self, gallery: Any) -> None:
        self.gallery, self.searches, self.model_id = gallery, 0, gallery.model_id

    def search(self, probes: np.ndarray, k: int = 5) -> Any:
        self.searches += 1
        return self.gallery.search(probes, k)


def _enrol_embedding(app, watchlist: str, ref: str, name: str, face: Any) -> None:  # type: ignore[no-untyped-def]
    """Put a face straight into the store (enrolment itself has its own tests)."""
    import sqlalchemy as sa

    from openlfr.store.models import Watchlist
    from tests.storekit import person_row, reference_image_row

    now = datetime.now(UTC)
    with app.state.server.sessions() as db:
        wl = db.scalar(sa.select(Watchlist).where(Watchlist.name == watchlist))
        person = person_row(ref, watchlist=wl, display_name=name, category="wanted_court", added_by="t", added_at=now)
        db.add(person)
        person.images.append(
            reference_image_row(face.embedding, face.model_id, "f" * 64, source="still.png", added_by="t")
        )
        db.commit()


def test_camera_tiles_show_only_alerted_faces(astronaut: np.ndarray) -> None:
    """A tile pixelates every face that raised no alert, and (by default) the rest of the scene, which may hold
    faces the detector missed; an alerted face stays sharp."""
    import io

    from PIL import Image

    from openlfr.runtime.tiles import TileFace, render_tile
    from openlfr.vision.types import Box

    face = Box(170, 40, 270, 150)  # the astronaut's face in scikit-image's picture (512x512)
    elsewhere = Box(20, 300, 120, 400)

    def detail(jpeg: bytes, box: Box) -> float:
        pixels = np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"), np.float32)
        inner = pixels[box.top + 6 : box.bottom - 6, box.left + 6 : box.right - 6]
        return float(np.abs(np.diff(inner, axis=1)).mean())  # neighbouring pixels differ: sharp detail

    original = float(np.abs(np.diff(astronaut.mean(axis=2)[46:144, 176:264], axis=1)).mean())
    blurred = render_tile(astronaut, [TileFace(face, alerted=False)], width=512)
    shown = render_tile(astronaut, [TileFace(face, alerted=True, label="P1")], width=512)
    only_faces = render_tile(astronaut, [TileFace(face, alerted=False)], width=512, blur_scene=False)
    assert detail(blurred, face) < original / 3
    assert detail(shown, face) > original * 0.7
    assert detail(blurred, elsewhere) < detail(only_faces, elsewhere) / 2  # the scene too, by default
    assert detail(only_faces, face) < original / 3
