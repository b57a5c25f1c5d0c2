"""Every pipeline setting reaches the live pipeline the same way on every path that starts one: `openlfr scan`
over a watchlist, `openlfr scan --deployment`, and the deployment runner of `openlfr serve` / `openlfr worker`.

The settings come from the environment, as a user sets them (OPENLFR_CALIBRATION_FILE, OPENLFR_STREAM_*); the
cameras' ROI, fps cap and minimum face come from the command line's flags or the deployment's camera records.
Each path builds its pipeline with the code it really runs; nothing is started (no camera is opened).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from openlfr.cli.scan import cameras_from, parse_roi
from openlfr.runtime.deployment_run import DeploymentRun
from openlfr.runtime.tiles import TileBoard
from openlfr.services.context import Context
from openlfr.services.deployments import authorise, create_draft
from openlfr.services.live import CameraDefaults, LivePipeline
from openlfr.services.scans import ScanRequest, prepare_scan
from openlfr.settings import Settings, get_settings
from openlfr.store import Store, open_store
from openlfr.store.models import Person, Watchlist
from openlfr.vision.engine import model_id_for
from openlfr.vision.types import Box
from openlfr.watchlist.calibration import CalibrationTable, choose_threshold
from openlfr.watchlist.search import Gallery
from tests.storekit import reference_image_row

TARGET_FPIR = 1e-3
ROI = Box(10, 20, 300, 200)
CAMERA_RECORD = {"name": "door", "source": "rtsp://127.0.0.1:9/none", "roi": [10, 20, 300, 200], "fps_cap": 4.0}
PEOPLE = 40


def calibration_file(folder: Path, model_id: str) -> Path:
    """A table of our own for the model in use: the shipped one with every false match rate 20 times higher, so
    a threshold picked from it differs from one picked from the shipped table."""
    shipped = resources.files("openlfr") / "data" / "calibration_dlib_resnet_v1+flip.json"
    table = CalibrationTable.from_json(json.loads(shipped.read_text()))
    ours = CalibrationTable(
        model_id, table.thresholds, np.minimum(table.fmr * 20, 1.0), table.pairs_at_or_above, table.independent_pairs,
        table.tail, {"made": "by the test"},
    )  # fmt: skip
    path = folder / "our-calibration.json"
    ours.save(path)
    return path


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, Store, Path]]:
    model_id = model_id_for(get_settings())
    table = calibration_file(tmp_path, model_id)
    for key, value in {
        "OPENLFR_CALIBRATION_FILE": str(table),
        "OPENLFR_STREAM_EVIDENCE_K": "3",
        "OPENLFR_STREAM_EVIDENCE_N": "7",
        "OPENLFR_STREAM_QUEUE_FRAMES": "5",
        "OPENLFR_STREAM_MIN_FACE_PX": "55",
        "OPENLFR_STREAM_DETECT_INTERVAL_S": "0.4",
        "OPENLFR_STREAM_TRACK_FUSION": "false",  # both on by default (issue 22)
        "OPENLFR_SEARCH_PERSON_TEMPLATES": "false",
    }.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    settings = get_settings()
    store = open_store(settings)
    _listed(store, model_id)
    yield settings, store, table
    store.close()


def _listed(store: Store, model_id: str) -> None:
    rng = np.random.default_rng(3)
    now = datetime.now(UTC)
    with store.session() as db:
        watchlist = Watchlist(name="w", purpose="tests", created_by="test", created_at=now)
        db.add(watchlist)
        for p in range(PEOPLE):
            person = Person(
                watchlist=watchlist, reference_id=f"P{p:03d}", display_name=f"Person {p}", category="other",
                reason="test", legal_basis="test", added_by="test", added_at=now, expires_at=now + timedelta(days=1),
            )  # fmt: skip
            db.add(person)
            vector = rng.normal(size=128).astype(np.float32)
            person.images.append(reference_image_row(vector / np.linalg.norm(vector), model_id, f"{p:064d}"))


def _expected_threshold(table: Path) -> float:
    ours = choose_threshold(CalibrationTable.load(table), PEOPLE, target_fpir=TARGET_FPIR).threshold
    shipped = CalibrationTable.from_json(
        json.loads((resources.files("openlfr") / "data" / "calibration_dlib_resnet_v1+flip.json").read_text())
    )
    assert ours != choose_threshold(shipped, PEOPLE, target_fpir=TARGET_FPIR).threshold  # the file matters
    return ours


def _assert_settings_reached(pipeline: LivePipeline, threshold: float) -> None:
    runner = pipeline.runner
    assert runner.rule is not None
    assert (runner.rule.k, runner.rule.n) == (3, 7)  # OPENLFR_STREAM_EVIDENCE_K/N
    assert runner.rule.threshold == pytest.approx(threshold)  # picked from OPENLFR_CALIBRATION_FILE
    assert runner.options.slots == 5  # OPENLFR_STREAM_QUEUE_FRAMES
    assert not runner.rule.fuse  # OPENLFR_STREAM_TRACK_FUSION
    assert isinstance(runner.matcher, Gallery) and not runner.matcher.templates  # OPENLFR_SEARCH_PERSON_TEMPLATES
    stream = runner.settings.stream  # the stream section
    assert stream.min_face_px == 55 and stream.detect_interval_s == 0.4
    (camera,) = runner.cameras
    assert camera.roi == ROI and camera.fps_cap == 4.0  # --roi / --fps-cap, or the deployment's camera record
    assert camera.min_face_px == 70  # --min-face, or the deployment's camera record


def _authorised_deployment(settings: Settings, store: Store) -> int:
    author = Context(settings, b"k" * 32, "olly", "operator")
    authoriser = Context(settings, b"k" * 32, "ava", "authoriser")
    with store.session() as db:
        row = create_draft(
            db, author, name="door", place="a station", purpose="find the listed people",
            starts_at=datetime.now(UTC) - timedelta(minutes=1), ends_at=datetime.now(UTC) + timedelta(hours=1),
            cameras=[{**CAMERA_RECORD, "min_face_px": 70}], watchlist="w", threshold=None, target_fpir=TARGET_FPIR,
        )  # fmt: skip
        deployment_id = int(row.id)
    with store.session() as db:
        authorise(db, authoriser, deployment_id, "the listed people are expected at this station today")
    return deployment_id


def test_a_scan_over_a_watchlist(configured: tuple[Settings, Store, Path]) -> None:
    settings, store, table = configured
    # what `openlfr scan rtsp://... --watchlist w --roi 10,20,300,200 --fps-cap 4 --min-face 70` builds
    cameras = cameras_from([CAMERA_RECORD["source"]], None, 4.0, 70, parse_roi("10,20,300,200"))
    request = ScanRequest(cameras, CameraDefaults(4.0, ROI, 70), watchlist="w")
    scan = prepare_scan(store, Context.local(settings), request, sinks=[])
    _assert_settings_reached(scan.pipeline, _expected_threshold(table))
    assert scan.record is not None and scan.pipeline.deployment_id == scan.record.deployment_id


def test_a_scan_inside_a_deployment(configured: tuple[Settings, Store, Path]) -> None:
    settings, store, table = configured
    deployment_id = _authorised_deployment(settings, store)
    # `openlfr scan --deployment ID`: the deployment's own cameras, with their ROI, fps cap and minimum face
    request = ScanRequest([], CameraDefaults(), deployment_id=deployment_id)
    scan = prepare_scan(store, Context.local(settings), request, sinks=[])
    _assert_settings_reached(scan.pipeline, _expected_threshold(table))
    assert scan.record is None and scan.pipeline.deployment_id == deployment_id


def test_the_deployment_runner_of_serve_and_worker(configured: tuple[Settings, Store, Path]) -> None:
    settings, store, table = configured
    deployment_id = _authorised_deployment(settings, store)
    run = DeploymentRun(store, settings, deployment_id, TileBoard())
    pipeline = run.prepare()  # what Scheduler.tick starts, in `openlfr serve` and in `openlfr worker`
    _assert_settings_reached(pipeline, _expected_threshold(table))
    assert pipeline.runner.options.realtime and pipeline.runner.options.capture.reconnect_attempts == 0
    assert pipeline.dispatcher.deployment_id == deployment_id
