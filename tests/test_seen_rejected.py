"""Seen and rejected (issue 22, item 5): the same unlisted face passing twice. The operator rejects the first alert;
the second is still raised and shown, marked "likely the person you rejected" with a link to the first; the mark and
the negative go with the first alert's probe (retention); the listed person is never marked; and the probe's
embedding is kept only with an alert (the live pipeline hands it on with the alert, nothing else)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from openlfr.alerts.database import AlertDatabase
from openlfr.governance.roles import Role
from openlfr.services.retention import enforce_once
from openlfr.settings import StreamSettings, get_settings
from openlfr.store.alert_models import Alert
from openlfr.store.models import Person, ReferenceImage
from openlfr.watchlist.score import match_score
from tests.serverkit import MODEL_ID, add_user, add_watchlist, build_app, configure, login
from tests.storekit import sighting
from tests.test_faults_store import sqlite_files, surviving_chunks
from tests.test_server_alerts import live_deployment

PERSON = "P001"
RETENTION_S = 3600


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    configure(monkeypatch, OPENLFR_PROBE_RETENTION_SECONDS=str(RETENTION_S))
    application = build_app()
    for name, role in (("olly", Role.OPERATOR), ("ava", Role.AUTHORISER)):
        add_user(application, name, role)
    add_watchlist(application)
    yield application
    application.state.server.store.close()


def reference_of(app, person: str) -> np.ndarray:  # type: ignore[no-untyped-def]
    with app.state.server.sessions() as db:
        vector = db.scalars(
            sa.select(ReferenceImage.embedding)
            .join(Person, Person.id == ReferenceImage.person_id)
            .where(Person.reference_id == person)
            .order_by(ReferenceImage.id)
        ).first()
    return np.asarray(vector, dtype=np.float32)


def towards(base: np.ndarray, cosine: float, seed: int) -> np.ndarray:
    """A unit vector at exactly this cosine to ``base`` (a random direction for the rest)."""
    noise = np.random.default_rng(seed).normal(size=base.shape)
    noise -= (noise @ base) * base
    return (cosine * base + np.sqrt(1 - cosine**2) * noise / np.linalg.norm(noise)).astype(np.float32)


def pass_by(app, deployment: int, probe: np.ndarray, track: int, reference: np.ndarray) -> int:  # type: ignore[no-untyped-def]
    """A face passing the camera and matching the listed person: the alert as the pipeline commits it."""
    score = float(match_score(float(probe @ reference), MODEL_ID))
    found = dataclasses.replace(
        sighting(PERSON, track_id=track, model_id=MODEL_ID),
        score=score,
        candidates=[(PERSON, 3, score)],
        probe_embedding=probe,
    )
    record, new = AlertDatabase(app.state.server.store).write(
        found, watchlist_name="wanted", names={PERSON: "Person 1"}, deployment_id=deployment
    )
    assert new
    return record.id


def test_the_same_unlisted_face_twice_is_marked_then_unmarked_when_the_probe_goes(app) -> None:  # type: ignore[no-untyped-def]
    deployment = live_deployment(app)
    reference = reference_of(app, PERSON)
    stranger = towards(reference, 0.62, seed=1)  # not the listed person, but above the threshold to them
    olly = login(app, "olly")

    first = pass_by(app, deployment, stranger, track=1, reference=reference)
    assert olly.get(f"/api/alerts/{first}").json()["seen_rejected"] is None
    answer = olly.post(f"/api/alerts/{first}/decision", json={"decision": "not_a_match"})
    assert answer.status_code == 200, answer.text

    # The same face again (another look at it): still raised and shown, with the mark and the link to the first.
    again = towards(stranger, 0.93, seed=2)
    second = pass_by(app, deployment, again, track=2, reference=reference)
    shown = olly.get(f"/api/alerts/{second}").json()
    mark = shown["seen_rejected"]
    assert mark is not None and mark["alert_id"] == first
    assert mark["score"] == pytest.approx(float(match_score(float(again @ stranger), MODEL_ID)), abs=1e-4)
    assert mark["score"] > shown["score"] and mark["rejected_at"] is not None
    assert shown["stage"] == "awaiting decision"  # the human decides: nothing is suppressed or decided for them
    assert second in [a["alert_id"] for a in olly.get("/api/alerts?open_only=true").json()]
    page = olly.get(f"/alerts/{second}").text
    assert 'data-testid="seen-rejected"' in page and f'href="/alerts/{first}"' in page

    # The listed person themself, closer to their references than to the rejected face: never marked.
    listed = towards(reference, 0.9, seed=3)
    assert float(listed @ stranger) < float(listed @ reference)
    own = pass_by(app, deployment, listed, track=3, reference=reference)
    assert olly.get(f"/api/alerts/{own}").json()["seen_rejected"] is None

    # The first alert's probe reaches its retention: its embedding is purged with the image, and the mark with it.
    store = app.state.server.store
    with store.session() as db:
        db.execute(sa.update(Alert).where(Alert.id == first).values(created_at=datetime.now(UTC) - timedelta(hours=2)))
        kept = db.scalar(sa.select(Alert.probe_embedding).where(Alert.id == first))
    assert kept == stranger.astype("<f4").tobytes()
    assert sum(surviving_chunks(kept, sqlite_files(store)).values()) > 0  # the check finds it while it is there
    report = enforce_once(store, get_settings())
    assert report.probes_purged == [first]
    assert olly.get(f"/api/alerts/{second}").json()["seen_rejected"] is None
    assert 'data-testid="seen-rejected"' not in olly.get(f"/alerts/{second}").text
    with store.session() as db:
        rows = dict(db.execute(sa.select(Alert.id, Alert.seen_rejected_alert_id)).all())
        assert db.scalar(sa.select(Alert.probe_embedding).where(Alert.id == first)) is None
    assert rows[second] is None
    assert surviving_chunks(kept, sqlite_files(store)) == {}  # gone from the files too, not only the table

    # The face passing a third time is not marked: its negative went with the probe.
    third = pass_by(app, deployment, towards(stranger, 0.93, seed=4), track=4, reference=reference)
    assert olly.get(f"/api/alerts/{third}").json()["seen_rejected"] is None


def test_the_pipeline_hands_on_the_probe_embedding_with_the_alert_only(engine, tmp_path: Path, astronaut) -> None:  # type: ignore[no-untyped-def]
    """A real pipeline on a clip: the alert carries the embedding of its probe; the track keeps none once decided."""
    from openlfr.stream.evidence import EvidenceRule
    from openlfr.stream.pipeline import CameraPipeline
    from openlfr.stream.source import CameraConfig, Capture
    from openlfr.vision.dlib_backend import HogDetector
    from openlfr.watchlist.search import Gallery
    from tests.streamkit import portrait, write_face_clip, yuv_frames

    face = portrait(astronaut)
    clip = write_face_clip(tmp_path / "once.mp4", face, seconds=1.5, visible=[(0.0, 1.5)])
    (listed,) = [f for f in engine.faces(astronaut) if f.box.top < 200]
    filler = np.random.default_rng(5).normal(size=(5, len(listed.embedding))).astype(np.float32)
    vectors = np.vstack([listed.embedding[None, :], filler / np.linalg.norm(filler, axis=1, keepdims=True)])
    gallery = Gallery(vectors, ["eileen", *[f"f{i}" for i in range(5)]], list(range(6)), engine.model_id)
    camera = CameraConfig("door", str(clip))
    pipeline = CameraPipeline(
        camera, StreamSettings(cooldown_s=0.0), engine, HogDetector(0), gallery, EvidenceRule(0.8)
    )
    alerts = []
    for yuv, frame in yuv_frames(Capture(camera).frames()):
        alerts += pipeline.process(yuv, frame.clock, frame.arrival, frame.media_time).alerts
    tracks = list(pipeline.tracker.active.values())
    pipeline.finish()
    (alert,) = alerts
    assert alert.probe_embedding is not None and alert.probe_embedding.shape == listed.embedding.shape
    assert float(alert.probe_embedding @ listed.embedding) > 0.8  # the probe's own embedding, of the same face
    decided = [track for track in tracks if track.decided]
    assert decided and all(sample.embedding is None for track in decided for sample in track.samples)


def test_the_negatives_go_with_the_deployments_snapshot_even_while_a_probe_is_held(app) -> None:  # type: ignore[no-untyped-def]
    from openlfr.services.audit_log import audit_key
    from openlfr.services.context import Context
    from openlfr.services.retention import enforce_retention, policy_of

    deployment = live_deployment(app)
    reference = reference_of(app, PERSON)
    held = pass_by(app, deployment, towards(reference, 0.62, seed=5), track=5, reference=reference)
    ava = login(app, "ava")
    assert ava.post(f"/api/alerts/{held}/hold", json={"reason": "Operation Falcon, case 2026/114"}).status_code == 200
    settings = get_settings()
    later = datetime.now(UTC) + timedelta(days=400)  # the window long over: the snapshot is due, the probe is held
    with app.state.server.sessions() as db:
        report = enforce_retention(db, Context.system(settings, audit_key(settings)), policy_of(settings), later)
        db.commit()
    assert report.snapshots_destroyed == [deployment] and report.probes_purged == []
    with app.state.server.sessions() as db:
        image, embedding = db.execute(sa.select(Alert.probe_jpeg, Alert.probe_embedding).where(Alert.id == held)).one()
    assert image is not None and embedding is None  # the held picture stays for the case; the negative is gone
