"""The second opinion on the live path (issue 22 item 4): ``OPENLFR_SECOND_OPINION``, SFace embeddings of the
references at enrolment and re-embedding, the re-score of candidates above the screen only (SFace calls
counted), the fused score's threshold from its shipped table, and the fallback for a list enrolled without it.
Real faces (scikit-image's astronaut), real models, SQLite.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from openlfr.enrolment.gate import QualityGate
from openlfr.enrolment.photos import analyse_photos
from openlfr.enrolment.service import PersonDetails
from openlfr.governance.roles import Role
from openlfr.services.context import Context
from openlfr.services.enrolment import enrol_person
from openlfr.services.live import listed_watchlist, snapshot_watchlist
from openlfr.services.reembed import reembed_watchlist
from openlfr.services.watchlists import create_watchlist
from openlfr.settings import Settings, SettingsError, get_settings
from openlfr.store import Store, open_store
from openlfr.store.governance_models import Deployment, SnapshotImage
from openlfr.store.models import ReferenceImage
from openlfr.stream.second_look import SecondOpinion
from openlfr.stream.tracker import Track
from openlfr.vision.engine import FaceEngine, build_engine, model_id_for, second_engine, second_model_id
from openlfr.vision.types import Box, Face
from openlfr.watchlist.calibration import calibrated_rate, choose_threshold, load_calibration
from openlfr.watchlist.score import match_score
from openlfr.watchlist.search import Candidate
from openlfr.watchlist.second_opinion import SecondGallery, fused_model_id, scored_by
from tests.conftest import require_data
from tests.enrol_photos import Photos, make_photos
from tests.streamkit import openlfr_env, run_openlfr
from tests.test_reembed import authorise, draft
from tests.test_scan_cli import embedding_like, enrol, everything_in, hamilton_people, jpegs, lines, table_rows

KEY = b"0123456789abcdef0123456789abcdef"
FIRST = model_id_for(Settings())
SECOND = second_model_id(Settings(second_opinion="sface"))


@pytest.fixture(scope="module")
def stills_engine() -> FaceEngine:
    return build_engine(Settings(second_opinion="sface"), stills=True, second_opinion=True)


@pytest.fixture(scope="module")
def live_face(engine: FaceEngine, astronaut: np.ndarray) -> Face:
    """The astronaut as a camera's pipeline sees her: analysed and embedded by the live engine."""
    faces = engine.faces(np.ascontiguousarray(astronaut[0:300, 80:380]))
    return max(faces, key=lambda f: f.box.area)


@pytest.fixture
def photos(tmp_path: Path, astronaut: np.ndarray) -> Photos:
    return make_photos(tmp_path / "photos", astronaut)


def acting(settings: Settings) -> Context:
    return Context(settings, KEY, "ann", Role.ADMIN.value)


def enrol_one(store: Store, engine: FaceEngine, settings: Settings, photo: Path) -> None:
    ctx = acting(settings)
    with store.session() as db:
        create_watchlist(db, ctx, "wanted", "tests")
    results = analyse_photos(engine, [photo], QualityGate.from_settings(settings), None, settings)
    assert all(r.accepted for r in results), [r.reason for r in results]
    details = PersonDetails(reference_id="eileen", display_name="Eileen", category="wanted_offence")
    with store.session() as db:
        enrol_person(db, ctx, "wanted", details, results)


def stored_models(store: Store) -> list[str]:
    with store.session() as db:
        return sorted(db.scalars(sa.select(ReferenceImage.model_id)))


def test_the_setting_refuses_unknown_values(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().second_opinion == "sface" and Settings(second_opinion="off").second_opinion == "off"
    with pytest.raises(ValidationError):
        Settings(second_opinion="arcface")
    assert second_model_id(Settings(second_opinion="off")) is None
    assert second_model_id(Settings(embedder="dlib")) is None  # dlib's own chip: SFace cannot share it
    monkeypatch.setenv("OPENLFR_SECOND_OPINION", "dlib")
    get_settings.cache_clear()
    with pytest.raises(SettingsError, match="OPENLFR_SECOND_OPINION"):
        get_settings()


def test_references_get_sface_embeddings_at_enrolment(stills_engine: FaceEngine, photos: Photos) -> None:
    settings = Settings(second_opinion="sface")
    store = open_store(get_settings())
    enrol_one(store, stills_engine, settings, photos.face)
    assert SECOND is not None and stored_models(store) == sorted([FIRST, SECOND])
    watchlist = listed_watchlist(store, "wanted", settings, threshold=None, target_fpir=1e-4)
    # Carried into the scan's watchlist, at the fused score's threshold from its shipped table.
    assert watchlist.second is not None and watchlist.second.model_id == SECOND
    table = load_calibration(fused_model_id(FIRST, SECOND))
    assert watchlist.threshold == choose_threshold(table, watchlist.size, target_fpir=1e-4).threshold
    assert watchlist.second.screen == table.source["screening_score"]
    assert "fused score" in watchlist.note
    # Off: the first model alone at its own table's threshold, though the SFace rows are there.
    first_table = load_calibration(FIRST)
    alone = listed_watchlist(store, "wanted", Settings(second_opinion="off"), threshold=None, target_fpir=1e-4)
    assert alone.second is None
    assert alone.threshold == choose_threshold(first_table, alone.size, target_fpir=1e-4).threshold
    # One listed person at 1e-3: the fused threshold lies below the screen's share, where SFace could change no
    # decision; so it is not run, and the note says why.
    lenient = listed_watchlist(store, "wanted", settings, threshold=None, target_fpir=1e-3)
    assert lenient.second is None and "could change no decision" in lenient.note
    assert lenient.threshold == choose_threshold(first_table, lenient.size, target_fpir=1e-3).threshold
    store.close()


def test_a_list_enrolled_without_sface_falls_back_until_reembedded(engine: FaceEngine, photos: Photos) -> None:
    off = Settings(second_opinion="off")
    store = open_store(get_settings())
    enrol_one(store, build_engine(off, stills=True, second_opinion=True), off, photos.face)
    assert stored_models(store) == [FIRST]
    on = Settings(second_opinion="sface")
    watchlist = listed_watchlist(store, "wanted", on, threshold=None, target_fpir=1e-4)
    assert watchlist.second is None
    assert "second opinion off" in watchlist.note and "openlfr watchlist reembed wanted" in watchlist.note
    assert watchlist.threshold == choose_threshold(load_calibration(FIRST), watchlist.size, target_fpir=1e-4).threshold
    with store.session() as db:
        report = reembed_watchlist(db, acting(on), "wanted")
    assert report.images_added == 0 and report.second_images_added == 1 and report.second_model_id == SECOND
    assert SECOND is not None and stored_models(store) == sorted([FIRST, SECOND])
    assert listed_watchlist(store, "wanted", on, threshold=None, target_fpir=1e-4).second is not None
    store.close()


def authorised(store: Store, settings: Settings, threshold: float | None, target_fpir: float | None) -> int:
    deployment_id = draft(store, settings, "wanted", threshold, target_fpir)
    authorise(store, settings, deployment_id)
    return deployment_id


def test_a_deployment_snapshot_carries_the_second_opinion(stills_engine: FaceEngine, photos: Photos) -> None:
    settings = Settings(second_opinion="sface")
    store = open_store(get_settings())
    enrol_one(store, stills_engine, settings, photos.face)
    strict = authorised(store, settings, None, 1e-4)
    with store.session() as db:
        rows = db.execute(
            sa.select(SnapshotImage.model_id, SnapshotImage.image_jpeg).where(SnapshotImage.deployment_id == strict)
        ).all()
        size = db.get(Deployment, strict).watchlist_size  # type: ignore[union-attr]
    # The SFace row follows the first model's, without a second copy of the picture; N counts the first's only.
    assert [(m, j is None) for m, j in rows] == [(FIRST, False), (SECOND, True)] and size == 1
    frozen = snapshot_watchlist(store, strict, Settings(second_opinion="off"))  # what was authorised runs
    table = load_calibration(fused_model_id(FIRST, str(SECOND)))
    assert frozen.second is not None and frozen.size == 1
    assert frozen.threshold == choose_threshold(table, 1, target_fpir=1e-4).threshold
    # A threshold given by a person is a first-model score: the snapshot is frozen without the second opinion.
    given = authorised(store, settings, 0.7, None)
    assert snapshot_watchlist(store, given, settings).second is None
    store.close()


def second_opinion(engine: FaceEngine, reference: np.ndarray, screen: float) -> SecondOpinion:
    gallery = SecondGallery(reference[None], ["eileen"], str(SECOND), screen)
    built = second_engine(engine, Settings(second_opinion="sface"), stills=False)
    assert built is not None
    return SecondOpinion(gallery, built)


def test_a_candidate_above_the_screen_is_rescored_below_it_sface_is_not_run(
    engine: FaceEngine, live_face: Face
) -> None:
    sface = second_engine(engine, Settings(second_opinion="sface"), stills=False)
    assert sface is not None
    reference = sface.embed_chips(live_face.chip[None])[0]
    opinion = second_opinion(engine, reference, screen=0.64)
    track = Track(1, Box(0, 0, 10, 10), 0.0, 0.0)
    below = [Candidate("eileen", 7, 0.60, 0.5)]
    (rescored,) = opinion.rescore_looks([(track, live_face)], [below])
    assert opinion.embedded == 0 and track.second_fused.looks == 0  # below the screen: SFace never ran
    assert rescored[0].score == pytest.approx(0.30)  # the first model's share only

    above = [Candidate("eileen", 7, 0.70, 0.6), Candidate("other", 8, 0.50, 0.4)]
    (rescored,) = opinion.rescore_looks([(Track(2, Box(0, 0, 10, 10), 0.0, 0.0), live_face)], [above])
    assert opinion.embedded == 1
    second = float(match_score(float(reference @ reference), str(SECOND)))
    assert rescored[0].person_id == "eileen" and rescored[0].score == pytest.approx(0.5 * 0.70 + 0.5 * second)
    assert rescored[1].score == pytest.approx(0.25)  # a candidate below the screen keeps its share only

    # A track's fused template screened in: the current look is embedded once, then its template re-scores.
    fresh = Track(3, Box(0, 0, 10, 10), 0.0, 0.0)
    (fused,) = opinion.rescore_fused([(fresh, live_face)], [above])
    assert opinion.embedded == 2 and fresh.second_fused.looks == 1
    assert fused[0].score == pytest.approx(0.5 * 0.70 + 0.5 * second, abs=1e-5)
    fresh.forget()
    assert fresh.second_fused.vector is None  # dropped with the track, as the first model's template


# ----- the live checks, with the second opinion at work (a stricter target, so its threshold lies above the screen)


def last_scan_note(data_dir: Path) -> str:
    """How the last scan's threshold was chosen, as its deployment record keeps it."""
    with sqlite3.connect(data_dir / "openlfr.db") as connection:
        return str(connection.execute("SELECT threshold_note FROM deployments ORDER BY id DESC").fetchone()[0])


@pytest.mark.data
@pytest.mark.slow
def test_the_clips_with_the_second_opinion_at_work(tmp_path: Path) -> None:
    """At 1 in 10,000 the fused threshold decides: the Hamilton clip still alerts once, for Lin-Manuel Miranda;
    the pedestrians raise none and leave no trace, SFace's 128-D embeddings of their faces included."""
    hamilton = require_data("video", "short_hamilton_clip.mp4")
    pedestrians = require_data("video", "pedestrians_1080p.mp4")
    stills = require_data("stills")
    people = hamilton_people(stills)
    data_dir = tmp_path / "data"
    env = openlfr_env(data_dir)
    enrol(data_dir, "hamilton", people, tmp_path)
    done = run_openlfr(["audit", "verify"], env)  # the audit key exists before the scans
    assert done.returncode == 0, done.stderr

    done = run_openlfr(["scan", str(hamilton), "--watchlist", "hamilton", "--target-fpir", "1e-4", "--json"], env)
    assert done.returncode == 0, done.stderr
    assert "fused score (sface_2021dec+flip second opinion" in last_scan_note(data_dir)
    alerts = [o for o in lines(done.stdout) if o["type"] == "alert"]
    assert [a["person"] for a in alerts] == ["lin-manuel-miranda"], alerts
    with sqlite3.connect(data_dir / "openlfr.db") as connection:
        model_id, evidence, score = connection.execute("SELECT model_id, evidence, score FROM alerts").fetchone()
    # The alert says the fused score decided, so its page and its sinks read the score's rate off the fused table.
    assert json.loads(evidence)["second_opinion"] == SECOND
    fused = load_calibration(fused_model_id(FIRST, str(SECOND)))
    assert scored_by(model_id, json.loads(evidence)) == fused.model_id
    assert calibrated_rate(fused.model_id, score, explicit=None, data_dir=None) == (
        float(f"{fused.fmr_at(score)[0]:.3g}"),
        fused.fmr_at(score)[1],
    )

    files_before = everything_in(data_dir)
    blob_before = b"".join(files_before.values())
    rows_before = table_rows(data_dir / "openlfr.db")
    done = run_openlfr(["scan", str(pedestrians), "--watchlist", "hamilton", "--target-fpir", "1e-4", "--json"], env)
    assert done.returncode == 0, done.stderr
    assert "fused score (sface_2021dec+flip second opinion" in last_scan_note(data_dir)
    output = lines(done.stdout)
    assert [o["type"] for o in output] == ["camera", "summary"], "no alert"
    files_after = everything_in(data_dir)
    assert set(files_after) - set(files_before) <= {"openlfr.db-wal", "openlfr.db-shm"}
    blob_after = b"".join(files_after.values())
    for dimension in (192, 128):  # MobileFaceNet's and SFace's
        assert embedding_like(blob_after, dimension) <= embedding_like(blob_before, dimension), dimension
    assert jpegs(blob_after) <= jpegs(blob_before)
    rows_after = table_rows(data_dir / "openlfr.db")
    assert {t for t in rows_after if rows_after[t] != rows_before.get(t)} == {"deployments", "audit_log", "audit_head"}
