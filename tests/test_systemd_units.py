"""The systemd units (deploy/systemd) pass `systemd-analyze verify` without a warning and keep their hardening."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import OPENLFR_BIN

UNITS = Path(__file__).resolve().parent.parent / "deploy" / "systemd"
INSTALLED = "/opt/openlfr/venv/bin/openlfr"
HARDENING = {
    "User": "openlfr",
    "StateDirectory": "openlfr",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "NoNewPrivileges": "yes",
    "PrivateTmp": "yes",
    "CapabilityBoundingSet": "",
    "RestrictSUIDSGID": "yes",
    "SystemCallFilter": "@system-service",
}


@pytest.fixture(scope="module")
def units(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian's systemd package)")
    folder = tmp_path_factory.mktemp("units")
    for unit in UNITS.glob("*.service"):
        # verify checks that ExecStart's program exists: point it at this checkout's openlfr
        (folder / unit.name).write_text(unit.read_text().replace(INSTALLED, str(OPENLFR_BIN)))
    return folder


@pytest.mark.parametrize("unit", ["openlfr-serve.service", "openlfr-worker@1.service"])
def test_systemd_analyze_verify_passes_without_a_warning(units: Path, unit: str) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", unit], cwd=units, capture_output=True, text=True, timeout=120, check=False
    )
    # verify exits 0 on directives it ignores (a misspelt key, a bad value): any output is a failure
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize("unit", ["openlfr-serve.service", "openlfr-worker@.service"])
def test_the_units_run_as_their_own_user_in_a_read_only_system(unit: str) -> None:
    text = (UNITS / unit).read_text()
    assert INSTALLED in text
    for key, value in HARDENING.items():
        assert re.search(rf"^{key}={re.escape(value)}$", text, re.M), f"{unit}: {key}={value} missing"
