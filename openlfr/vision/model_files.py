"""Where the model weights are: installed registry packages and the user cache. Nothing is downloaded."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from openlfr.errors import ModelError

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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
