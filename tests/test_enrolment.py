"""Enrolment: the quality gate, duplicates, expiry, and all-or-nothing writes, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from openlfr.enrolment.gate import QualityGate, choose_face, parse_face_choice
from openlfr.enrolment.photos import PhotoResult, analyse_photo
from openlfr.enrolment.service import (
    EnrolmentRefused,
    PersonDetails,
    create_watchlist,
    enrol,
    expire,
    remove_person,
)
from openlfr.settings import Settings, get_settings
from openlfr.store import Store, open_store
from openlfr.store.models import Person, ReferenceImage, Watchlist
from openlfr.store.watchlists import active_references, get_watchlist
from openlfr.vision.engine import FaceEngine, build_engine
from openlfr.vision.types import Box, Quality
from tests.enrol_photos import Photos, make_photos
from tests.serverkit import MODEL_DIMENSION

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SETTINGS = Settings()
GATE = QualityGate.from_settings(SETTINGS)


@pytest.fixture(scope="module")
def enrol_engine() -> FaceEngine:
    return build_engine(Settings(), stills=True)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Photos:
    return make_photos(tmp_path_factory.mktemp("photos"), astronaut)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(get_settings())
    with opened.session() as session:
        create_watchlist(session, "wl", "tests", "tester", NOW)
    yield opened
    opened.close()


def analyse(engine: FaceEngine, path: Path, choice: int | str | None = None) -> PhotoResult:
    return analyse_photo(
        engine, path, GATE, choice, max_pixels=SETTINGS.max_image_pixels, detect_max_side=SETTINGS.enrol_detect_max_side
    )  # type: ignore[arg-type]


def enrol_paths(
    store: Store,
    engine: FaceEngine,
    reference_id: str,
    paths: list[Path],
    *,
    allow_duplicate: bool = False,
    now: datetime = NOW,
    expires_at: datetime | None = None,
    choice: int | str | None = None,
) -> None:
    results = [analyse(engine, path, choice) for path in paths]
    with store.session() as session:
        enrol(
            session,
            get_watchlist(session, "wl"),
            PersonDetails(
                reference_id, display_name=f"Person {reference_id}", category="wanted_court", expires_at=expires_at
            ),
            results,
            actor="tester",
            now=now,
            default_expiry=now + timedelta(days=30),
            duplicate_score=SETTINGS.enrol_duplicate_score,
            allow_duplicate=allow_duplicate,
        )


def row_counts(store: Store) -> tuple[int, int, int]:
    with store.session() as session:
        return tuple(  # type: ignore[return-value]
            session.scalar(sa.select(sa.func.count()).select_from(table))
            for table in (Watchlist, Person, ReferenceImage)
        )


# ----- refusals: each names its reason, and nothing at all is written -----


@pytest.mark.parametrize(
    ("photo", "reason"),
    [
        ("no_face", "no face found"),
        ("two_faces", "2 faces found"),
        ("small", "face too small: 22 px between the eyes (minimum 31)"),
        ("blurred", "face too blurred: sharpness"),
        ("truncated", "damaged or truncated"),
        ("not_an_image", "not an image file"),
    ],
)
def test_a_bad_photo_refuses_the_whole_person_and_writes_nothing(
    store: Store, enrol_engine: FaceEngine, photos: Photos, photo: str, reason: str
) -> None:
    before = row_counts(store)
    bad = getattr(photos, photo)
    with pytest.raises(EnrolmentRefused) as refused:
        # The good photo goes first: it must not be written either.
        enrol_paths(store, enrol_engine, "P1", [photos.face, bad])
    sources = [source for source, _ in refused.value.problems]
    assert sources == [str(bad)]
    assert reason in refused.value.problems[0][1]
    assert "P1 not enrolled, nothing written" in str(refused.value)
    assert row_counts(store) == before


def test_a_duplicate_of_someone_listed_is_refused_unless_allowed(
    store: Store, enrol_engine: FaceEngine, photos: Photos
) -> None:
    enrol_paths(store, enrol_engine, "A", [photos.face])
    before = row_counts(store)
    with pytest.raises(EnrolmentRefused) as refused:
        enrol_paths(store, enrol_engine, "B", [photos.face_again])
    (problem,) = refused.value.problems
    assert problem[0] == str(photos.face_again)
    assert "looks like A (Person A), already on the list (match score" in problem[1]
    assert row_counts(store) == before
    # Checked by a person and found to be someone else: the operator may insist.
    enrol_paths(store, enrol_engine, "B", [photos.face_again], allow_duplicate=True)
    assert row_counts(store) == (before[0], before[1] + 1, before[2] + 1)


def test_more_photos_of_the_same_person_are_not_duplicates(
    store: Store, enrol_engine: FaceEngine, photos: Photos
) -> None:
    enrol_paths(store, enrol_engine, "A", [photos.face])
    enrol_paths(store, enrol_engine, "A", [photos.face_again])
    with store.session() as session:
        (person,) = session.scalars(sa.select(Person)).all()
        assert [Path(image.source).name for image in person.images] == ["face.png", "face_again.jpg"]
    with pytest.raises(EnrolmentRefused, match=r"the same file as .*face\.png, already given for A"):
        enrol_paths(store, enrol_engine, "A", [photos.face])


def test_the_same_file_twice_in_one_enrolment_is_refused(
    store: Store, enrol_engine: FaceEngine, photos: Photos
) -> None:
    with pytest.raises(EnrolmentRefused, match="the same file as"):
        enrol_paths(store, enrol_engine, "A", [photos.face, photos.face])
    assert row_counts(store)[1:] == (0, 0)


def test_an_explicit_choice_enrols_one_face_of_several_and_keeps_only_that_face(
    store: Store, enrol_engine: FaceEngine, photos: Photos
) -> None:
    enrol_paths(store, enrol_engine, "A", [photos.two_faces], choice=2)
    with store.session() as session:
        image = session.scalars(sa.select(ReferenceImage)).one()
        kept = np.asarray(Image.open(io.BytesIO(image.face_jpeg)).convert("RGB"))
        assert image.box_left >= 300  # the second face from the left is in the right half
    # The stored picture is the face region only: the other person in the photo is not kept.
    assert max(kept.shape[:2]) <= 400
    assert len(enrol_engine.faces(np.ascontiguousarray(kept), embed=False)) == 1


def test_new_people_need_a_name_a_known_category_and_a_future_expiry(
    store: Store, enrol_engine: FaceEngine, photos: Photos
) -> None:
    result = [analyse(enrol_engine, photos.face)]
    cases = [
        (PersonDetails("A", display_name=None, category="other"), "needs a display name"),
        (PersonDetails("A", display_name="A", category=None), "needs a category"),
        (PersonDetails("A", display_name="A", category="suspicious"), "unknown category 'suspicious'"),
        (PersonDetails("A", display_name="A", category="other", expires_at=NOW - timedelta(1)), "already passed"),
        (PersonDetails("A" * 101, display_name="A", category="other"), "the person's id is longer than 100"),
        (PersonDetails("  ", display_name="A", category="other"), "the person's id is empty"),
        (PersonDetails("A", display_name="bell\x07", category="other"), r"the display name contains U\+0007"),
    ]
    for details, message in cases:
        with pytest.raises(EnrolmentRefused, match=message), store.session() as session:
            enrol(
                session,
                get_watchlist(session, "wl"),
                details,
                result,
                actor="t",
                now=NOW,
                default_expiry=NOW + timedelta(days=1),
                duplicate_score=0.8,
            )
    assert row_counts(store)[1:] == (0, 0)


# ----- expiry: expired people are never searched -----


def test_expired_people_are_left_out_of_search_and_of_duplicate_checks(
    store: Store, enrol_engine: FaceEngine, photos: Photos
) -> None:
    enrol_paths(store, enrol_engine, "A", [photos.face], expires_at=NOW + timedelta(hours=1))
    with store.session() as session:
        watchlist = get_watchlist(session, "wl")
        active = active_references(session, watchlist.id, enrol_engine.model_id, NOW)
        assert active.size == 1 and active.embeddings.shape == (1, MODEL_DIMENSION)
        assert active.people[active.person_ids[0]].reference_id == "A"
        assert active_references(session, watchlist.id, enrol_engine.model_id, NOW + timedelta(hours=1)).size == 0
        assert active_references(session, watchlist.id, "another-model", NOW).size == 0
    with store.session() as session:
        assert expire(session, get_watchlist(session, "wl"), "A", NOW) == 1
    with store.session() as session:
        assert active_references(session, get_watchlist(session, "wl").id, enrol_engine.model_id, NOW).size == 0
        # Expiry is only ever brought forward.
        assert expire(session, get_watchlist(session, "wl"), None, NOW + timedelta(days=9)) == 0
    # Someone who looks like an expired entry is not a duplicate of an active one.
    enrol_paths(store, enrol_engine, "B", [photos.face_again])
    with pytest.raises(EnrolmentRefused, match="expired; remove them first"):
        enrol_paths(store, enrol_engine, "A", [photos.face_again], allow_duplicate=True)


def test_removing_a_person_deletes_their_photos_and_embeddings(
    store: Store, enrol_engine: FaceEngine, photos: Photos
) -> None:
    enrol_paths(store, enrol_engine, "A", [photos.face, photos.face_again])
    with store.session() as session:
        assert remove_person(session, get_watchlist(session, "wl"), "A") == 2
    assert row_counts(store) == (1, 0, 0)


# ----- the gate itself: pure functions -----


def quality(**changes: float) -> Quality:
    values = {"face_height_px": 100, "inter_eye_px": 40.0, "sharpness": 50.0, "yaw_deg": 0.0, "pitch_deg": 0.0}
    values.update(changes)
    return Quality(roll_deg=0.0, **values)  # type: ignore[arg-type]


def test_gate_names_every_shortfall() -> None:
    gate = QualityGate(min_inter_eye_px=30, min_sharpness=8, max_yaw_deg=35, max_pitch_deg=25)
    assert gate.refusals(quality()) == []
    assert gate.refusals(quality(inter_eye_px=29.4)) == ["face too small: 29 px between the eyes (minimum 30)"]
    assert gate.refusals(quality(sharpness=7.9)) == ["face too blurred: sharpness 7.9 (minimum 8)"]
    assert gate.refusals(quality(yaw_deg=-40)) == ["face turned sideways: yaw -40° (limit ±35°)"]
    assert gate.refusals(quality(pitch_deg=30)) == ["face tilted up or down: pitch +30° (limit ±25°)"]
    assert len(gate.refusals(quality(inter_eye_px=10, sharpness=1, yaw_deg=50, pitch_deg=-50))) == 4


def test_faces_are_chosen_explicitly_and_numbered_from_the_left() -> None:
    right, left_small = Box(300, 0, 400, 100), Box(0, 0, 50, 50)
    assert choose_face([], None) == "no face found"
    assert choose_face([right], None) == 0
    assert "2 faces found" in str(choose_face([right, left_small], None))
    assert choose_face([right, left_small], 1) == 1
    assert choose_face([right, left_small], 2) == 0
    assert choose_face([right, left_small], "largest") == 0
    assert choose_face([right, left_small], 3) == "--face 3 asked for, but 2 face(s) found"
    assert parse_face_choice(None) is None and parse_face_choice("LARGEST") == "largest"
    assert parse_face_choice("2") == 2
    for bad in ("0", "two"):
        with pytest.raises(ValueError, match="--face"):
            parse_face_choice(bad)


# ----- folder import -----


def test_import_with_worker_processes_from_a_process_that_already_ran_the_engine(
    tmp_path: Path, enrol_engine: FaceEngine, photos: Photos, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers must not inherit ONNX Runtime's threads mid-use (a forked child can hang): they are spawned."""
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    from openlfr.enrolment import importer
    from openlfr.services.context import Context
    from openlfr.services.enrolment import import_folder

    monkeypatch.setattr(importer, "MIN_PEOPLE_FOR_WORKERS", 1)  # use the worker pool even for four people

    assert len(enrol_engine.faces(np.asarray(Image.open(photos.face).convert("RGB")))) == 1  # the engine has run
    folder = tmp_path / "people"
    for person, photo in (("A", photos.face), ("B", photos.blurred), ("C", photos.face_again)):
        (folder / person).mkdir(parents=True)
        shutil.copy(photo, folder / person)
    (folder / "D").mkdir()
    (folder / "loose.txt").write_text("not a person")
    settings = Settings(data_dir=tmp_path / "data", database_url=None)
    store = open_store(settings)
    with store.session() as session:
        create_watchlist(session, "wl", "", "tester", NOW)
    with ThreadPoolExecutor(1) as runner:
        running = runner.submit(
            import_folder,
            store,
            Context(settings, b"k" * 32, "tester", "cli"),
            "wl",
            folder,
            template=PersonDetails("", category="other", reason="a test import", legal_basis="none: test photos"),
            choice=None,
            allow_duplicate=False,
            now=NOW,
            workers=2,
        )
        rows, ignored = running.result(timeout=300)
    assert [(r.reference_id, r.status, r.photos) for r in rows] == [
        ("A", "enrolled", 1),
        ("B", "refused", 0),
        ("C", "refused", 0),
        ("D", "refused", 0),
    ]
    assert "face too blurred" in rows[1].reasons[0]
    assert "looks like A" in rows[2].reasons[0]  # a duplicate of someone enrolled earlier in the same import
    assert rows[3].reasons == ["no image files in the folder"]
    assert ignored == ["loose.txt"]
    store.close()
