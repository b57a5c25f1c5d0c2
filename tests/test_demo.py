"""`make demo` runs the main job end to end on the embedded default (SQLite)."""

import subprocess

from tests.conftest import OPENLFR_BIN, require_data


def test_demo_finds_faces_then_alerts_on_the_listed_performer(tmp_path, isolated_data_dir):
    require_data("video", "short_hamilton_clip.mp4")
    out = tmp_path / "faces.png"
    result = subprocess.run([str(OPENLFR_BIN), "demo", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert out.is_file()
    alerts = [line for line in result.stdout.splitlines() if "ALERT:" in line]
    assert alerts and all("lin-manuel-miranda" in line for line in alerts)
    assert (isolated_data_dir / "demo" / "openlfr-demo.db").is_file()
