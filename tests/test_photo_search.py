"""Photo search (``openlfr search``, ``POST /api/search``, the console page): the probe's face against the active
entries of a watchlist, with a stated reason that is audited, and nothing of the probe kept unless the search is
recorded for an investigation (then only the face, until probe retention ends).

"Nothing of the probe" is checked on the bytes of every file of the data directory (the SQLite database, its WAL,
the audit key...): no 64-byte run of the probe file, nor of its embedding as float32, occurs in any of them.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from openlfr.enrolment.gate import FaceChoice, QualityGate
from openlfr.enrolment.photos import analyse_photo
from openlfr.enrolment.service import PersonDetails
from openlfr.governance.roles import Role
from openlfr.services import photo_search
from openlfr.services.context import Context
from openlfr.services.enrolment import enrol_person
from openlfr.services.photo_search import SearchRefused, SearchRequest, search_photo
from openlfr.services.watchlists import create_watchlist
from openlfr.settings import Settings, get_settings
from openlfr.store.db import open_store
from openlfr.store.governance_models import AuditEntry
from openlfr.store.models import ReferenceImage
from openlfr.store.search_models import PhotoSearch
from openlfr.vision.engine import build_engine, model_id_for
from openlfr.vision.image_io import load_rgb
from tests.conftest import OPENLFR_BIN, TEST_DATA, require_data
from tests.serverkit import LiveServer, add_user, build_app, configure, enrol_upload, login

WINDOW = 64
REASON = "Identify the suspect in the CCTV still of crime report 2026/4471"
HAMILTON_SECONDS = 5.0  # Lin-Manuel Miranda alone on stage, facing the camera (3.9-7.9 s)


# ----- what is left of a probe -----


def _window_hashes(data: bytes, step: int) -> np.ndarray:
    """A polynomial hash (mod 2**64) of each 64-byte run of ``data`` starting at a multiple of ``step``."""
    values = np.frombuffer(data, np.uint8).astype(np.uint64)
    count = (len(values) - WINDOW) // step + 1
    if count <= 0:
        return np.zeros(0, np.uint64)
    hashes = np.zeros(count, np.uint64)
    for j in range(WINDOW):
        hashes = hashes * np.uint64(1_000_003) + values[j : j + (count - 1) * step + 1 : step]
    return hashes


def traces(needle: bytes, folder: Path) -> dict[str, int]:
    """For each file under ``folder``, how many of its 64-byte blocks (at every multiple of 64) are runs of
    ``needle`` (at any offset): any copy of 127 bytes or more of it, wherever it starts, covers a whole block.
    Hashes find the candidates; each is then compared byte for byte."""
    runs = _window_hashes(needle, 1)
    found: dict[str, int] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blocks = _window_hashes(data, WINDOW)
        candidates = np.flatnonzero(np.isin(blocks, runs))
        hits = sum(data[i * WINDOW : (i + 1) * WINDOW] in needle for i in candidates.tolist())
        if hits:
            found[str(path.relative_to(folder))] = hits
    return found


def picture_data(image: Path | bytes) -> bytes:
    """The probe file from its compressed picture data on: the bytes before (a JPEG's tables, a PNG's header) are
    the same in many files the same library writes, the enrolled reference pictures included, so they say nothing
    about the probe."""
    data = image.read_bytes() if isinstance(image, Path) else image
    marker = b"\xff\xda" if data[:2] == b"\xff\xd8" else b"IDAT"
    start = data.find(marker)
    assert start > 0, "neither a JPEG nor a PNG"
    return data[start:]


def float32_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def probe_embedding(settings: Settings, path: Path, choice: FaceChoice = None) -> np.ndarray:
    """The embedding a search computes for this photo (the same engine, the same face)."""
    engine = photo_search.probe_engine(settings)
    face, _ = photo_search.embed_probe(engine, load_rgb(path, settings.max_image_pixels), choice, settings)
    assert face.embedding is not None
    return face.embedding


def assert_nothing_left(folder: Path, probe: Path, embedding: np.ndarray) -> None:
    assert traces(picture_data(probe), folder) == {}
    assert traces(float32_bytes(embedding), folder) == {}


def test_the_trace_check_finds_a_copy_wherever_it_starts(tmp_path: Path) -> None:
    probe = np.random.default_rng(3).integers(0, 256, 5000, np.uint8).tobytes()
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "clean").write_bytes(np.random.default_rng(4).integers(0, 256, 9000, np.uint8).tobytes())
    assert traces(probe, folder) == {}
    for offset in (0, 1, 37, 63):
        (folder / "copy").write_bytes(b"x" * offset + probe[1000:1200] + b"y" * 100)
        assert traces(probe, folder).get("copy", 0) >= 2


# ----- a watchlist, enrolled as `openlfr watchlist add` does -----


@dataclass(frozen=True)
class Listed:
    data_dir: Path  # a data directory holding the enrolled watchlist, copied for each test
    watchlist: str


def enrol(settings: Settings, watchlist: str, people: dict[str, tuple[str, list[Path]]]) -> None:
    engine = build_engine(settings, stills=True)
    gate = QualityGate.from_settings(settings)
    ctx = Context.local(settings, "admin-h8")
    store = open_store(settings)
    try:
        with store.session() as db:
            create_watchlist(db, ctx, watchlist, "photo search tests")
        for reference_id, (name, photos) in people.items():
            results = [
                analyse_photo(
                    engine,
                    photo,
                    gate,
                    "largest",
                    max_pixels=settings.max_image_pixels,
                    detect_max_side=settings.enrol_detect_max_side,
                )
                for photo in photos
            ]
            details = PersonDetails(reference_id, name, "wanted_offence", reason="test listing", legal_basis="test")
            with store.session() as db:
                enrol_person(db, ctx, watchlist, details, results, allow_duplicate=True)
    finally:
        store.close()


def use(listed: Listed, data_dir: Path) -> Settings:
    """This test's data directory becomes a copy of the enrolled one."""
    shutil.copytree(listed.data_dir, data_dir, dirs_exist_ok=True)
    get_settings.cache_clear()
    settings = get_settings()
    assert settings.data_dir == data_dir
    return settings


def search(settings: Settings, image: Path, watchlist: str, **options: object) -> photo_search.PhotoSearchResult:
    request = SearchRequest(watchlist, str(options.pop("reason", REASON)), **options)  # type: ignore[arg-type]
    engine = photo_search.probe_engine(settings)
    store = open_store(settings)
    try:
        with store.session() as db:
            return search_photo(db, Context.local(settings, "officer-h8"), engine, load_rgb(image, 10**8), request)
    finally:
        store.close()


def searches_audited(settings: Settings) -> list[AuditEntry]:
    store = open_store(settings)
    try:
        with store.session() as db:
            entries = db.scalars(sa.select(AuditEntry).where(AuditEntry.action == "search.photo")).all()
            db.expunge_all()
            return list(entries)
    finally:
        store.close()


# ----- anywhere: scikit-image's astronaut -----


@pytest.fixture(scope="module")
def astronaut_photos(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("astronaut")
    head = np.ascontiguousarray(astronaut[0:300, 80:380])
    Image.fromarray(head).save(folder / "enrolled.png")
    # Another file of her: mirrored, cropped closer and re-encoded.
    other = np.ascontiguousarray(astronaut[15:260, 110:350][:, ::-1])
    Image.fromarray(other).save(folder / "probe.jpg", quality=85)
    Image.fromarray(np.ascontiguousarray(np.concatenate([head, head[:, ::-1]], axis=1))).save(folder / "two.png")
    # A probe of more than 1 MB (Starlette's spool limit): the picture enlarged, as PNG.
    Image.fromarray(head).resize((1200, 1200), Image.Resampling.BICUBIC).save(folder / "large.png")
    return {p.stem: p for p in folder.iterdir()}


@pytest.fixture(scope="module")
def astronaut_listed(tmp_path_factory: pytest.TempPathFactory, astronaut_photos: dict[str, Path]) -> Listed:
    data_dir = tmp_path_factory.mktemp("astronaut-data")
    settings = Settings(data_dir=data_dir)
    enrol(settings, "space", {"A-1": ("Eileen Collins", [astronaut_photos["enrolled"]])})
    return Listed(data_dir, "space")


def test_the_astronaut_is_found_from_another_photo_and_nothing_of_it_is_kept(
    astronaut_listed: Listed, astronaut_photos: dict[str, Path], isolated_data_dir: Path
) -> None:
    settings = use(astronaut_listed, isolated_data_dir)
    probe = astronaut_photos["probe"]
    result = search(settings, probe, "space", top=3)
    (first,) = result.candidates
    assert (first.person, first.name, first.rank) == ("A-1", "Eileen Collins", 1)
    # Above what 99.9% of strangers score on either embedding model (score.py: 0.72 dlib, 0.58 MobileFaceNet).
    assert first.score > 0.8, first
    assert result.record_id is None and result.references == 1
    answer = result.as_dict()
    assert {"person", "name", "score", "fmr"} <= answer["candidates"][0].keys()
    (entry,) = searches_audited(settings)
    assert entry.actor == "officer-h8" and entry.details["reason"] == REASON
    # The audit entry names each candidate and the reference picture shown with it (which its searcher alone may
    # then see, for a while): never an image or an embedding.
    assert entry.details["candidates"] == [
        {"person": "A-1", "score": round(first.score, 4), "image": first.reference_image_id}
    ]
    assert entry.target == "watchlist:space" and entry.seq == result.audit_seq
    assert_nothing_left(isolated_data_dir, probe, probe_embedding(settings, probe))


def test_a_reason_is_required_and_a_refused_search_leaves_nothing(
    astronaut_listed: Listed, astronaut_photos: dict[str, Path], isolated_data_dir: Path
) -> None:
    settings = use(astronaut_listed, isolated_data_dir)
    for reason in ("", "   ", "too short a reason", " " * 30 + "19 characters here!"):
        with pytest.raises(SearchRefused, match="at least 20 characters"):
            search(settings, astronaut_photos["probe"], "space", reason=reason)
    with pytest.raises(SearchRefused, match="between 1 and 50"):
        search(settings, astronaut_photos["probe"], "space", top=0)
    assert searches_audited(settings) == []

    # The command: one line on stderr, exit 2, before any photo is read.
    refused = subprocess.run(
        [str(OPENLFR_BIN), "search", str(astronaut_photos["probe"]), "--watchlist", "space", "--reason", "because"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "at least 20 characters" in lines[0], refused.stderr
    assert searches_audited(settings) == []
    assert_nothing_left(
        isolated_data_dir, astronaut_photos["probe"], probe_embedding(settings, astronaut_photos["probe"])
    )


def test_only_people_still_listed_are_searched(
    astronaut_listed: Listed, astronaut_photos: dict[str, Path], isolated_data_dir: Path
) -> None:
    from openlfr.clock import utc_now
    from openlfr.services.watchlists import expire

    settings = use(astronaut_listed, isolated_data_dir)
    store = open_store(settings)
    try:
        with store.session() as db:
            assert expire(db, Context.local(settings, "admin-h8"), "space", "A-1", utc_now()) == 1
    finally:
        store.close()
    with pytest.raises(SearchRefused, match="'space' has nobody to search for"):
        search(settings, astronaut_photos["probe"], "space")
    assert searches_audited(settings) == []


def test_several_faces_need_a_choice(
    astronaut_listed: Listed, astronaut_photos: dict[str, Path], isolated_data_dir: Path
) -> None:
    settings = use(astronaut_listed, isolated_data_dir)
    with pytest.raises(SearchRefused, match=r"2 faces in the photo.*--face.*1: .* px tall at x .*; 2: ") as refused:
        search(settings, astronaut_photos["two"], "space")
    assert "\n" not in str(refused.value)
    with pytest.raises(SearchRefused, match="face 3 asked for, but the photo shows 2"):
        search(settings, astronaut_photos["two"], "space", face=3)
    assert searches_audited(settings) == []
    for choice, number in ((1, 1), (2, 2), ("largest", None)):
        result = search(settings, astronaut_photos["two"], "space", face=choice)
        assert result.probe.faces_found == 2 and result.candidates[0].person == "A-1"
        assert number is None or result.probe.number == number
    assert len(searches_audited(settings)) == 3


def test_a_search_recorded_for_an_investigation_keeps_the_face_until_probe_retention_ends(
    astronaut_listed: Listed,
    astronaut_photos: dict[str, Path],
    isolated_data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from openlfr.services.retention import enforce_once

    settings = use(astronaut_listed, isolated_data_dir)
    probe = astronaut_photos["two"]  # the face searched with, and another beside it
    result = search(settings, probe, "space", face=1, investigation="OP-KESTREL-17")
    assert result.record_id is not None
    store = open_store(settings)
    try:
        with store.session() as db:
            row = db.get(PhotoSearch, result.record_id)
            assert row is not None and row.probe_jpeg is not None
            face_jpeg = row.probe_jpeg
            assert (row.investigation, row.reason, row.searched_by) == ("OP-KESTREL-17", REASON, "officer-h8")
            assert row.candidates[0]["person"] == "A-1"
        # Only the region of the face searched with, never the whole photo; never the embedding.
        (width, height), (probe_width, probe_height) = Image.open(io.BytesIO(face_jpeg)).size, Image.open(probe).size
        assert width * height < probe_width * probe_height / 2
        kept = picture_data(face_jpeg)
        assert sum(traces(kept, isolated_data_dir).values()) > len(kept) // WINDOW // 2  # the check sees it
        assert traces(float32_bytes(probe_embedding(settings, probe, 1)), isolated_data_dir) == {}

        assert enforce_once(store, settings).search_probes_purged == []  # 31 days by default
        monkeypatch.setenv("OPENLFR_PROBE_RETENTION_SECONDS", "0")
        get_settings.cache_clear()
        report = enforce_once(store, get_settings())
        assert report.search_probes_purged == [result.record_id]
        with store.session() as db:
            row = db.get(PhotoSearch, result.record_id)
            assert row is not None and row.probe_jpeg is None and row.probe_purged_at is not None
            assert row.investigation == "OP-KESTREL-17"  # the record stays
            purges = db.scalars(sa.select(AuditEntry).where(AuditEntry.action == "retention.search_probes_purged"))
            assert [e.details for e in purges] == [{"searches": [result.record_id]}]
    finally:
        store.close()
    assert traces(kept, isolated_data_dir) == {}
    assert_nothing_left(isolated_data_dir, probe, probe_embedding(settings, probe, 1))


# ----- the API and the console -----


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, astronaut_photos: dict[str, Path]) -> Iterator[object]:
    configure(monkeypatch)
    app = build_app()
    for role in Role:
        add_user(app, f"user-{role.value}", role)
    admin = login(app, "user-admin")
    assert admin.post("/api/watchlists", json={"name": "space", "purpose": "tests"}).status_code == 201
    enrol_upload(admin, "space", "A-1", "Eileen Collins", [astronaut_photos["enrolled"]])
    yield app


def test_an_uploaded_probe_never_goes_to_a_temporary_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starlette spools an uploaded file of more than 1 MB to a temporary file; the search form keeps it in memory."""
    import asyncio
    from collections.abc import AsyncIterator

    from starlette.datastructures import Headers
    from starlette.formparsers import MultiPartParser

    from openlfr.api.enrol_upload import InMemoryForm

    made: list[object] = []
    real = tempfile.TemporaryFile

    def spy(*args: object, **kwargs: object) -> object:
        made.append(args)
        return real()

    monkeypatch.setattr(tempfile, "TemporaryFile", spy)
    photo = np.random.default_rng(5).integers(0, 256, 2 * 1024 * 1024, np.uint8).tobytes()
    head = b'--b\r\nContent-Disposition: form-data; name="image"; filename="p.png"\r\n\r\n'
    body = head + photo + b"\r\n--b--\r\n"
    headers = Headers({"content-type": "multipart/form-data; boundary=b"})

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    class Streamed:
        def __init__(self) -> None:
            self.headers = headers

        def stream(self) -> AsyncIterator[bytes]:
            return chunks()

    asyncio.run(MultiPartParser(headers, chunks()).parse())
    assert len(made) == 1  # the check sees a spool to the disk
    made.clear()
    parsed = asyncio.run(InMemoryForm(Streamed(), 1, 5, 10_000_000).parse())  # type: ignore[arg-type]
    assert made == [] and parsed["image"].size == len(photo)  # type: ignore[union-attr]


def form(photo: Path, reason: str = REASON, **fields: str) -> dict[str, object]:
    return {
        "files": {"image": (photo.name, photo.read_bytes(), "image/png")},
        "data": {"watchlist": "space", "reason": reason, **fields},
    }


def test_the_api_searches_for_operators_and_authorisers_only(
    served: object, astronaut_photos: dict[str, Path], isolated_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = served
    operator = login(app, "user-operator")  # type: ignore[arg-type]
    authoriser = login(app, "user-authoriser")  # type: ignore[arg-type]
    with app.state.server.sessions() as db:  # type: ignore[attr-defined]
        # the photo's row of the searched model (a second row holds its SFace embedding, for the second opinion)
        (enrolled,) = db.scalars(
            sa.select(ReferenceImage.id).where(ReferenceImage.model_id == model_id_for(Settings()))
        ).all()
    # A reference picture is no catalogue: before anyone has searched, no id (real or not) shows a face; the
    # answers are alike and each is audited.
    unasked = operator.get(f"/api/search/references/{enrolled}.jpg")
    assert unasked.status_code == 404, unasked.status_code
    assert operator.get(f"/api/search/references/{enrolled + 1000}.jpg").json() == unasked.json()
    # A probe of more than 1 MB would be spooled to a temporary file by a plain form parser: none may be made.
    made: list[object] = []

    def no_temporary_file(*args: object, **kwargs: object) -> object:
        made.append(args)
        raise AssertionError("the probe was about to be written to a temporary file")

    monkeypatch.setattr(tempfile, "TemporaryFile", no_temporary_file)
    large = astronaut_photos["large"]
    assert large.stat().st_size > 1024 * 1024
    answer = operator.post("/api/search", **form(large, top="2"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert made == []
    (first,) = body["candidates"]
    assert first["person"] == "A-1" and first["name"] == "Eileen Collins" and first["score"] > 0.8
    assert body["searched_by"] == "user-operator" and body["record_id"] is None
    picture = operator.get(f"/api/search/references/{first['reference_image_id']}.jpg")
    assert picture.status_code == 200 and picture.content[:2] == b"\xff\xd8"
    # ... to the operator whose search showed it, not to anyone else who may search, and not once its time is up.
    assert authoriser.get(f"/api/search/references/{first['reference_image_id']}.jpg").status_code == 404
    state = app.state.server  # type: ignore[attr-defined]
    with state.sessions() as db:
        viewed = db.scalars(sa.select(AuditEntry).where(AuditEntry.action == "search.reference_viewed")).all()
        assert [(e.actor, e.target, e.details["search"]) for e in viewed] == [
            ("user-operator", f"reference_image:{enrolled}", body["audit_seq"])
        ]
        refused = db.scalars(sa.select(AuditEntry).where(AuditEntry.action == "search.reference_refused")).all()
        assert [e.actor for e in refused] == ["user-operator", "user-operator", "user-authoriser"]
        ctx = Context(state.settings, state.audit_key, "user-operator", "operator")
        later = datetime.now(UTC) + timedelta(seconds=state.settings.search_reference_seconds + 1)
        assert photo_search.candidate_reference(db, ctx, enrolled, later) is None
    assert_nothing_left(isolated_data_dir, large, probe_embedding(get_settings(), large))

    answer = authoriser.post("/api/search", **form(astronaut_photos["two"], face="largest"))
    assert answer.status_code == 200 and answer.json()["probe"]["faces_found"] == 2
    for role in ("auditor", "admin"):
        other = login(app, f"user-{role}")  # type: ignore[arg-type]
        assert other.post("/api/search", **form(astronaut_photos["probe"])).status_code == 403
        assert other.get(f"/api/search/references/{first['reference_image_id']}.jpg").status_code == 403
        assert other.get("/search").status_code == 403

    refused = operator.post("/api/search", **form(astronaut_photos["probe"], reason="short"))
    assert refused.status_code == 400 and "at least 20 characters" in refused.json()["detail"]
    several = operator.post("/api/search", **form(astronaut_photos["two"]))
    assert several.status_code == 400 and "2 faces in the photo" in several.json()["detail"]
    assert operator.post("/api/search", json={"watchlist": "space"}).status_code == 400
    with app.state.server.sessions() as db:  # type: ignore[attr-defined]
        audited = db.scalars(sa.select(AuditEntry).where(AuditEntry.action == "search.photo")).all()
        assert [(e.actor, e.details["reason"]) for e in audited] == [
            ("user-operator", REASON),
            ("user-authoriser", REASON),
        ]

    page = operator.get("/search")
    assert page.status_code == 200 and 'id="photo-search"' in page.text and "space (1 listed)" in page.text
    assert '<a href="/search">' in page.text


# ----- the shared data: the gallery and Lin-Manuel Miranda -----


@pytest.fixture(scope="module")
def hamilton_listed(tmp_path_factory: pytest.TempPathFactory) -> Listed:
    gallery = require_data("stills", "gallery")
    miranda = require_data("stills", "lin-manuel-miranda.png")
    people = {
        folder.name: (folder.name.replace("_", " ").title(), sorted(p for p in folder.iterdir() if p.is_file()))
        for folder in sorted(gallery.iterdir())
        if folder.is_dir()
    }
    people["lin_manuel_miranda"] = ("Lin-Manuel Miranda", [miranda])
    data_dir = tmp_path_factory.mktemp("hamilton-data")
    enrol(Settings(data_dir=data_dir), "hamilton", people)
    return Listed(data_dir, "hamilton")


@pytest.fixture(scope="module")
def hamilton_frame(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import av

    clip = require_data("video", "short_hamilton_clip.mp4")
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if frame.time is not None and frame.time >= HAMILTON_SECONDS:
                path = tmp_path_factory.mktemp("frame") / "hamilton-5s.png"
                Image.fromarray(frame.to_ndarray(format="rgb24")).save(path)
                return path
    raise AssertionError("the clip is shorter than expected")


@pytest.mark.data
@pytest.mark.slow
def test_lin_manuel_miranda_is_ranked_first_and_nothing_of_the_probe_is_kept(
    hamilton_listed: Listed, hamilton_frame: Path, isolated_data_dir: Path
) -> None:
    settings = use(hamilton_listed, isolated_data_dir)
    still = TEST_DATA / "stills" / "lin-manuel-miranda.png"
    # As a user runs it: the installed command, acting as the person at the keyboard.
    done = subprocess.run(
        [str(OPENLFR_BIN), "search", str(still), "--watchlist", "hamilton", "--reason", REASON, "--top", "5", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    ranked = [c["person"] for c in answer["candidates"]]
    assert ranked[0] == "lin_manuel_miranda", answer["candidates"]
    assert len(ranked) == 5 and answer["people_searched"] == 8
    scores = [c["score"] for c in answer["candidates"]]
    assert scores == sorted(scores, reverse=True) and scores[0] - scores[1] > 0.2
    for candidate in answer["candidates"]:
        assert {"person", "name", "score", "fmr"} <= candidate.keys()
        fmr = candidate["fmr"]
        # fmr is the calibration table's, or null when the model has none (and the answer says so).
        assert (fmr is None and "fmr null" in answer["calibration"]) or 0 <= fmr <= 1
    fmrs = [c["fmr"] for c in answer["candidates"] if c["fmr"] is not None]
    assert fmrs == sorted(fmrs)  # a higher score is a rarer false match

    # A frame of the clip: another picture of him than the one enrolled.
    result = search(settings, hamilton_frame, "hamilton", top=3)
    assert result.candidates[0].person == "lin_manuel_miranda", result.candidates

    audited = searches_audited(settings)
    assert [(e.details["reason"], e.details["candidates"][0]["person"]) for e in audited] == [
        (REASON, "lin_manuel_miranda"),
        (REASON, "lin_manuel_miranda"),
    ]
    assert audited[0].actor.startswith("cli:") and audited[1].actor == "officer-h8"
    assert audited[0].seq == answer["audit_seq"]
    assert_nothing_left(isolated_data_dir, hamilton_frame, probe_embedding(settings, hamilton_frame))
    assert traces(picture_data(still), isolated_data_dir) == {}
    assert traces(float32_bytes(probe_embedding(settings, still)), isolated_data_dir) == {}


@pytest.mark.slow
def test_the_console_page_searches_and_shows_each_candidate_with_its_reference_picture(
    served: object, astronaut_photos: dict[str, Path]
) -> None:
    from tests.test_console_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, log_in, new_page

    if not Path(CHROMIUM).exists():
        pytest.skip(f"no browser at {CHROMIUM} (Debian package chromium; `make system-deps` as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with LiveServer(served) as server, sync_api.sync_playwright() as playwright:  # type: ignore[arg-type]
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = log_in(new_page(browser), server.url, "user-operator")
            page.click("nav a:has-text('Photo search')")
            page.wait_for_url(f"{server.url}/search")
            form = page.locator("form#photo-search")
            form.locator("textarea[name=reason]").fill(REASON)
            # Two faces and none chosen: the page offers the faces to choose from (tests/test_console_search_picker.py).
            form.locator("input[type=file]").set_input_files(str(astronaut_photos["two"]))
            form.locator("button[type=submit]").click()
            page.wait_for_selector("#face-picker:has-text('2 faces in the photo')")
            assert page.locator("#search-results").is_hidden()
            form.locator("input[type=file]").set_input_files(str(astronaut_photos["probe"]))
            page.wait_for_selector("form#photo-search button[type=submit]:enabled")
            form.locator("button[type=submit]").click()
            page.wait_for_selector("#search-candidates tr[data-person='A-1']")
            row = page.locator("#search-candidates tr[data-person='A-1']")
            assert "Eileen Collins" in row.inner_text()
            page.wait_for_function("() => document.querySelector('#search-candidates img').naturalWidth > 0")
            assert "The photo was not kept" in page.inner_text("[data-testid=search-summary]")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "photo-search.png"), full_page=True)
        finally:
            browser.close()
    with served.state.server.sessions() as db:  # type: ignore[attr-defined]
        audited = db.scalars(sa.select(AuditEntry).where(AuditEntry.action == "search.photo")).all()
        assert [(e.actor, e.details["reason"]) for e in audited] == [("user-operator", REASON)]
