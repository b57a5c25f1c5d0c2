"""``openlfr watchlist reembed``: a watchlist enrolled under dlib's ResNet is searched under the default model
only after its stored face pictures are embedded again; until then authorising a deployment on it is refused,
naming the people it would miss. On SQLite and PostgreSQL, with real faces (scikit-image's astronaut, and the
shared stills when present).
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image
from skimage import data
from typer.testing import CliRunner

from openlfr.cli.main import app
from openlfr.enrolment.gate import QualityGate
from openlfr.enrolment.photos import analyse_photos
from openlfr.enrolment.service import PersonDetails
from openlfr.governance.deployments import TransitionRefused
from openlfr.governance.roles import Role
from openlfr.services import deployments
from openlfr.services.context import Context
from openlfr.services.enrolment import enrol_person
from openlfr.services.reembed import reembed_watchlist
from openlfr.services.watchlists import create_watchlist, remove_person
from openlfr.settings import Settings, get_settings
from openlfr.store import Store, open_store
from openlfr.store.governance_models import AuditEntry, SnapshotImage
from openlfr.store.models import Person, ReferenceImage
from openlfr.vision.engine import FaceEngine, build_engine, model_id_for, second_model_id
from tests.conftest import TEST_DATA
from tests.enrol_photos import Photos, make_photos

KEY = b"0123456789abcdef0123456789abcdef"
DLIB = model_id_for(Settings(embedder="dlib"))
DEFAULT = model_id_for(Settings())
SFACE = second_model_id(Settings())
WATCHLIST = "wanted"


@pytest.fixture(scope="module")
def dlib_engine() -> FaceEngine:
    return build_engine(Settings(embedder="dlib"), stills=True)


@pytest.fixture(scope="module")
def default_engine() -> FaceEngine:
    return build_engine(Settings(), stills=True)


@pytest.fixture
def photos(tmp_path: Path, astronaut: np.ndarray) -> Photos:
    return make_photos(tmp_path / "photos", astronaut)


def acting(settings: Settings, who: str, role: Role | str) -> Context:
    return Context(settings, KEY, who, role.value if isinstance(role, Role) else role)


def people_to_enrol(photos: Photos) -> dict[str, list[Path]]:
    """The astronaut, and the shared stills' people when the shared data is there."""
    people = {"eileen": [photos.face]}
    stills = TEST_DATA / "stills"
    for name in ("lin-manuel-miranda", "alex-lacamoire"):
        if (stills / f"{name}.png").is_file():
            people[name] = [stills / f"{name}.png"]
    return people


def enrol_under_dlib(
    store: Store, engine: FaceEngine, people: dict[str, list[Path]], allow_duplicate: bool = False
) -> None:
    settings = Settings(embedder="dlib")
    ctx = acting(settings, "ann", Role.ADMIN)
    gate = QualityGate.from_settings(settings)
    with store.session() as db:
        create_watchlist(db, ctx, WATCHLIST, "tests")
    for person, paths in people.items():
        results = analyse_photos(engine, paths, gate, None, settings)
        assert all(r.accepted for r in results), [r.reason for r in results]
        details = PersonDetails(reference_id=person, display_name=person.title(), category="wanted_offence")
        with store.session() as db:
            enrol_person(db, ctx, WATCHLIST, details, results, allow_duplicate=allow_duplicate)


def draft(
    store: Store,
    settings: Settings,
    watchlist: str = WATCHLIST,
    threshold: float | None = 0.5,
    target_fpir: float | None = None,
) -> int:
    now = datetime.now(UTC)
    with store.session() as db:
        row = deployments.create_draft(
            db,
            acting(settings, "olly", Role.OPERATOR),
            name="high street",
            place="high street",
            purpose="find wanted people",
            starts_at=now + timedelta(minutes=5),
            ends_at=now + timedelta(hours=2),
            cameras=[{"name": "cam1", "source": "clip.mp4"}],
            watchlist=watchlist,
            threshold=threshold,
            target_fpir=target_fpir,
        )
        return row.id


def authorise(store: Store, settings: Settings, deployment_id: int) -> None:
    with store.session() as db:
        ctx = acting(settings, "ava", Role.AUTHORISER)
        deployments.authorise(db, ctx, deployment_id, "necessary and proportionate for this operation")


def embeddings_by_model(store: Store) -> dict[tuple[str, str], list[np.ndarray]]:
    """(person, model id) -> the person's embeddings of that model."""
    found: dict[tuple[str, str], list[np.ndarray]] = {}
    with store.session() as db:
        rows = db.execute(
            sa.select(Person.reference_id, ReferenceImage.model_id, ReferenceImage.embedding).join(Person)
        ).all()
    for person, model_id, embedding in rows:
        found.setdefault((person, model_id), []).append(np.asarray(embedding))
    return found


def reembed_audits(store: Store) -> list[AuditEntry]:
    with store.session() as db:
        entries = list(db.scalars(sa.select(AuditEntry).where(AuditEntry.action == "watchlist.reembed")))
        db.expunge_all()
    return entries


def test_a_dlib_watchlist_is_refused_until_reembedded(
    store_url: str, photos: Photos, dlib_engine: FaceEngine, default_engine: FaceEngine
) -> None:
    store = open_store(get_settings())
    people = people_to_enrol(photos)
    enrol_under_dlib(store, dlib_engine, people)
    settings = Settings()

    first = draft(store, settings)
    with pytest.raises(TransitionRefused) as refused:
        authorise(store, settings, first)
    message = str(refused.value)
    assert f"has {len(people)} listed" in message and "eileen" in message
    assert f"openlfr watchlist reembed {WATCHLIST}" in message and DEFAULT in message
    with store.session() as db:
        assert db.scalar(sa.select(sa.func.count(SnapshotImage.id))) == 0  # nothing half-written

    with store.session() as db:
        report = reembed_watchlist(db, acting(settings, "ann", Role.ADMIN), WATCHLIST, engine=default_engine)
    assert sorted(report.reembedded) == sorted(people) and not report.refused
    assert report.images_added == len(people) and report.model_id == DEFAULT
    # and a row of the second opinion's model (OPENLFR_SECOND_OPINION=sface, the default) from the same picture
    assert report.second_images_added == len(people) and report.second_model_id is not None

    stored = embeddings_by_model(store)
    gate = QualityGate.from_settings(settings)
    for person, paths in people.items():
        assert len(stored[(person, DLIB)]) == 1  # the old embeddings stay (a switch back still works)
        (new,) = stored[(person, DEFAULT)]
        # From the stored face picture, close to what enrolling the whole photo under the model gives.
        (fresh,) = analyse_photos(default_engine, paths, gate, None, settings)
        assert fresh.face is not None
        assert float(new @ fresh.face.embedding) > 0.85, person
    others = [p for p in people if p != "eileen"]
    for other in others:  # and still told apart from the others
        assert float(stored[("eileen", DEFAULT)][0] @ stored[(other, DEFAULT)][0]) < 0.5

    (entry,) = reembed_audits(store)
    assert entry.actor == "ann" and entry.target == f"watchlist:{WATCHLIST}"
    assert entry.details["reembedded"] == len(people) and entry.details["refused"] == []
    assert entry.details["model_id"] == DEFAULT

    authorise(store, settings, first)
    with store.session() as db:
        models = list(db.scalars(sa.select(SnapshotImage.model_id).where(SnapshotImage.deployment_id == first)))
    assert models == [DEFAULT] * len(people)

    # A second run has nothing to do; a switch back to dlib authorises with the old embeddings.
    with store.session() as db:
        again = reembed_watchlist(db, acting(settings, "ann", Role.ADMIN), WATCHLIST, engine=default_engine)
    assert again.images_added == 0 and sorted(again.up_to_date) == sorted(people)
    dlib_settings = Settings(embedder="dlib")
    second = draft(store, dlib_settings)
    authorise(store, dlib_settings, second)
    with store.session() as db:
        models = list(db.scalars(sa.select(SnapshotImage.model_id).where(SnapshotImage.deployment_id == second)))
    assert models == [DLIB] * len(people)
    with store.session() as db:  # a photo is counted once, whatever number of models it has rows of
        assert remove_person(db, acting(settings, "ann", Role.ADMIN), WATCHLIST, "eileen") == 1
    store.close()


def jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def test_a_person_whose_picture_fails_keeps_the_old_embeddings(
    store_url: str, photos: Photos, dlib_engine: FaceEngine, default_engine: FaceEngine
) -> None:
    """All or nothing per person: one bad picture of two keeps the person as they were; the others go ahead."""
    store = open_store(get_settings())
    mirrored = photos.face.with_name("mirrored.png")
    Image.open(photos.face).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored)
    people = {"eileen": [photos.face], "corrupt": [photos.face_again, mirrored], "faceless": [photos.face]}
    enrol_under_dlib(store, dlib_engine, people, allow_duplicate=True)
    with store.session() as db:
        images = {
            (p, i.source): i for p, i in db.execute(sa.select(Person.reference_id, ReferenceImage).join(Person)).all()
        }
        images[("corrupt", str(mirrored))].face_jpeg = b"\xff\xd8\xff\xe0 not really a jpeg"
        images[("faceless", str(photos.face))].face_jpeg = jpeg(data.coffee()[:300, :300])
    settings = Settings()

    result = CliRunner().invoke(app, ["watchlist", "reembed", WATCHLIST, "--by", "ann", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["reembedded"] == 1 and report["images_added"] == 1
    refused = {r["person"]: r["reasons"] for r in report["refused"]}
    assert sorted(refused) == ["corrupt", "faceless"]
    (corrupt_reason,) = refused["corrupt"]  # the good picture of the two is not reported
    assert corrupt_reason.startswith(str(mirrored)) and "damaged" in corrupt_reason
    assert refused["faceless"] == [f"{photos.face}: no face found in the stored face picture"]

    stored = embeddings_by_model(store)
    assert len(stored[("eileen", DEFAULT)]) == 1
    assert ("corrupt", DEFAULT) not in stored and ("faceless", DEFAULT) not in stored
    assert len(stored[("corrupt", DLIB)]) == 2 and len(stored[("faceless", DLIB)]) == 1
    (entry,) = reembed_audits(store)
    assert entry.actor == "ann" and entry.details["refused"] == report["refused"]

    deployment = draft(store, settings)
    with pytest.raises(TransitionRefused, match=r"has 2 listed people .*: corrupt, faceless; run `openlfr watchlist"):
        authorise(store, settings, deployment)
    store.close()


def test_the_api_route_is_for_admins(monkeypatch: pytest.MonkeyPatch, astronaut: np.ndarray) -> None:
    """``POST /api/watchlists/{name}/reembed``: an operator is refused (nothing added), an admin gets the report."""
    from openlfr.enrolment.photos import face_picture
    from openlfr.store.models import Watchlist
    from tests.serverkit import add_user, build_app, configure, login
    from tests.storekit import reference_image_row

    configure(monkeypatch)
    application = build_app()
    add_user(application, "ann", Role.ADMIN)
    add_user(application, "olly", Role.OPERATOR)
    head = np.ascontiguousarray(astronaut[0:300, 80:380])
    (found,) = build_engine(Settings()).detect(head)
    now = datetime.now(UTC)
    with application.state.server.sessions() as db:
        watchlist = Watchlist(name=WATCHLIST, purpose="tests", created_by="test", created_at=now)
        person = Person(
            watchlist=watchlist,
            reference_id="eileen",
            display_name="Eileen",
            category="wanted_offence",
            added_by="test",
            added_at=now,
            expires_at=now + timedelta(days=30),
        )
        vector = np.ones(128, np.float32) / np.sqrt(128)  # an old model's embedding: never read here
        person.images.append(reference_image_row(vector, DLIB, "a" * 64, face_jpeg=face_picture(head, found.box)))
        db.add(watchlist)
        db.commit()

    refused = login(application, "olly").post(f"/api/watchlists/{WATCHLIST}/reembed")
    assert refused.status_code == 403
    assert embeddings_by_model(application.state.server.store).keys() == {("eileen", DLIB)}

    answer = login(application, "ann").post(f"/api/watchlists/{WATCHLIST}/reembed")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_id"] == DEFAULT and body["reembedded"] == 1 and body["images_added"] == 1
    assert body["refused"] == [] and body["up_to_date"] == 0
    # and the second opinion's model (OPENLFR_SECOND_OPINION=sface, the default) from the same picture
    assert set(embeddings_by_model(application.state.server.store)) == {
        ("eileen", DLIB),
        ("eileen", DEFAULT),
        ("eileen", SFACE),
    }
    (entry,) = reembed_audits(application.state.server.store)
    assert entry.actor == "ann"
    assert login(application, "ann").post("/api/watchlists/nobody/reembed").status_code == 404
    application.state.server.store.close()


def test_the_refusal_names_the_first_few_and_counts_the_rest() -> None:
    from openlfr.governance.deployments import MISSING_NAMED, check_snapshot_complete

    check_snapshot_complete("w", DEFAULT, [])  # nobody missing: no refusal
    missing = [f"P{i:03d}" for i in range(12)]
    with pytest.raises(TransitionRefused) as refused:
        check_snapshot_complete("high street", DEFAULT, missing)
    message = str(refused.value)
    assert ", ".join(missing[:MISSING_NAMED]) + f" and {12 - MISSING_NAMED} more" in message
    assert missing[MISSING_NAMED] not in message and "has 12 listed people" in message
    assert "`openlfr watchlist reembed 'high street'`" in message
    with pytest.raises(TransitionRefused, match="has 1 listed person with no"):
        check_snapshot_complete("w", DEFAULT, ["P1"])
