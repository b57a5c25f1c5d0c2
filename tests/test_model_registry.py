"""The registry of face models (openlfr/face_models.py): settings refuse unknown names with the known ones, the
engine is built from the entries, a missing model is a clear error (never a conversion in a request), and only
``openlfr models build`` reaches the build package."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from openlfr import face_models
from openlfr.errors import ModelNotBuilt
from openlfr.face_models import DETECTORS, EMBEDDERS, UnknownModel, detector_spec
from openlfr.settings import Settings
from openlfr.vision.engine import build_detector, build_engine, model_id_for
from openlfr.watchlist.score import score_floor
from tests.conftest import OPENLFR_BIN
from tests.serverkit import add_cast, add_watchlist, build_app, configure, login

ROOT = Path(__file__).resolve().parent.parent


def test_unknown_names_are_refused_with_the_known_ones() -> None:
    with pytest.raises(ValidationError, match="unknown embedder 'arcface': choose one of mobilefacenet, dlib, sface"):
        Settings(embedder="arcface")
    with pytest.raises(ValidationError, match="unknown detector 'haar': choose one of retinaface, hog, mmod"):
        Settings(detector="haar")
    with pytest.raises(UnknownModel, match="choose one of retinaface, hog, mmod"):
        detector_spec("yolo")
    # Names are the registry's own spelling, whatever case and spaces they came in.
    assert Settings(detector=" HOG ", embedder="Dlib").detector == "hog"
    assert Settings(embedder="Dlib").embedder == "dlib"


def test_the_registry_drives_the_engine(astronaut) -> None:
    for spec in EMBEDDERS.values():
        settings = Settings(embedder=spec.name)
        assert model_id_for(settings) == spec.model_id + "+flip"
        assert score_floor(spec.model_id + "+flip") == spec.score_floor
    dlib = build_engine(Settings(embedder="dlib"), stills=True)
    assert dlib.embedder.model_id == EMBEDDERS["dlib"].model_id
    assert dlib.embedder.chip_size == EMBEDDERS["dlib"].chip_size == dlib.aligner.chip_size  # its aligner: dlib's
    assert dlib.second_aligner is not None  # the entry allows the 68-point second alignment on stills
    assert dlib.fallback is not None and dlib.fallback.name == DETECTORS["retinaface"].stills_fallback
    live = build_engine(Settings())
    assert live.embedder.model_id == EMBEDDERS["mobilefacenet"].model_id and live.second_aligner is None
    assert live.detector.name == "retinaface" and live.fallback is None
    (face,) = live.faces(astronaut)
    assert face.embedding is not None and face.embedding.shape == (EMBEDDERS["mobilefacenet"].dimension,)
    for spec in DETECTORS.values():
        assert build_detector(Settings(), spec.name).name == spec.name
    # `openlfr models build` makes every file an entry runs from, each step a function the registry names.
    built = dict(face_models.build_steps())
    runs_from_cache = [s.name for s in [*DETECTORS.values(), *EMBEDDERS.values()] if s.cache_file is not None]
    assert sorted(built) == sorted(runs_from_cache) and all(callable(face_models.load(step)) for step in built.values())


def test_a_missing_model_names_the_build_command(tmp_path: Path) -> None:
    with pytest.raises(ModelNotBuilt, match=r"openlfr models build"):
        build_engine(Settings(cache_dir=tmp_path))
    assert not any(tmp_path.rglob("*")), "nothing may be written into the model cache at run time"


def _astronaut_jpeg() -> bytes:
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(data.astronaut())).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_an_enrolment_request_with_an_empty_model_cache_answers_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-model-cache"
    empty.mkdir()
    configure(monkeypatch, OPENLFR_CACHE_DIR=str(empty))
    app = build_app()
    try:
        add_cast(app)
        add_watchlist(app)
        ann = login(app, "ann")
        form = {"person": "A1", "display_name": "Astronaut", "category": "other"}
        answer = ann.post("/api/watchlists/wanted/people", data=form, files=[("images", ("a.jpg", _astronaut_jpeg()))])
        assert answer.status_code == 503, answer.text
        assert "openlfr models build" in answer.json()["detail"]
        assert not any(empty.rglob("*")), "an HTTP request wrote into the model cache"
    finally:
        app.state.server.store.close()


def test_only_the_models_command_imports_the_build_package() -> None:
    config = (ROOT / "pyproject.toml").read_text()
    assert 'forbidden_modules = ["openlfr.modelbuild"]' in config
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--contract", "modelbuild"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0 and re.search(r"1 kept, 0 broken", result.stdout), result.stdout + result.stderr


def test_bench_identify_with_no_model_cache_names_the_build_command(tmp_path: Path) -> None:
    # A tiny LFW-shaped folder: 4 people, 2 photos each (the astronaut), enough for the protocol to start.
    jpeg = _astronaut_jpeg()
    for person in ("Ann_A", "Bob_B", "Cat_C", "Dan_D"):
        folder = tmp_path / "lfw" / "images" / person
        folder.mkdir(parents=True)
        for number in (1, 2):
            (folder / f"{person}_{number:04d}.jpg").write_bytes(jpeg)
    empty = tmp_path / "empty-model-cache"
    environment = {**os.environ, "OPENLFR_CACHE_DIR": str(empty), "OPENLFR_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run(
        [str(OPENLFR_BIN), "bench", "identify", "--data", str(tmp_path / "lfw"), "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )
    assert result.returncode != 0
    assert "openlfr models build" in result.stderr, result.stderr
    assert "BrokenProcessPool" not in result.stderr + result.stdout and "Traceback" not in result.stderr
    assert not any(empty.rglob("*.onnx"))
