"""Shared fixtures. Real data comes from OPENLFR_TEST_DATA (default ../shared/data) and is never copied."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# A real PostgreSQL server for store tests; `store_url` runs a test on SQLite and on PostgreSQL.
from tests.postgres import postgres_server, postgres_url, store_url  # noqa: F401

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEST_DATA = Path(os.environ.get("OPENLFR_TEST_DATA", PROJECT_ROOT.parent / "shared" / "data")).resolve()
OPENLFR_BIN = PROJECT_ROOT / ".venv" / "bin" / "openlfr"


def require_data(*parts: str) -> Path:
    """The shared data path, or skip the test saying what is missing."""
    path = TEST_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not found at {path} (set OPENLFR_TEST_DATA)")
    return path


@pytest.fixture(autouse=True)
def isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own data directory; the model cache stays shared (it is derived, not data)."""
    data_dir = tmp_path / "openlfr-data"
    monkeypatch.setenv("OPENLFR_DATA_DIR", str(data_dir))
    from openlfr.settings import get_settings

    get_settings.cache_clear()
    yield data_dir
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real face that ships with a registry package, for tests that must run anywhere."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def engine():  # type: ignore[no-untyped-def]
    from openlfr.settings import Settings
    from openlfr.vision.engine import build_engine

    return build_engine(Settings())


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for a module's browser tests (``tests/browserkit.py``)."""
    from tests import browserkit

    with browserkit.chromium() as running:
        yield running
