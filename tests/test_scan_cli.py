"""`openlfr scan` end to end on the shared clips, with watchlists enrolled by `openlfr watchlist import`.

* The Hamilton clip with Lin-Manuel Miranda, Alex Lacamoire and the gallery as fillers: alerts for Lin-Manuel
  Miranda (Alex Lacamoire if recognisable), nobody else, one per track; each alert in the database first.
* The pedestrians clip with the gallery watchlist: no alert, faces counted, and no trace of anyone: the
  database, the data directory and the output are searched for crops and embeddings, and hold only counts.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import require_data
from tests.serverkit import MODEL_DIMENSION
from tests.streamkit import openlfr_env, run_openlfr

pytestmark = [pytest.mark.data, pytest.mark.slow]

SUMMARY_KEYS = ["type", "frames", "faces_seen", "tracks", "alerts", "fps", "latency_ms_p50", "latency_ms_p95"]
ALERT_KEYS = ["type", "person", "camera", "track", "score", "latency_ms"]


def enrol(data_dir: Path, name: str, people: dict[str, list[Path]], workdir: Path) -> None:
    """One sub-folder per person (folder name = id), then `openlfr watchlist import`."""
    folder = workdir / f"{name}-photos"
    for person, photos in people.items():
        (folder / person).mkdir(parents=True)
        for photo in photos:
            (folder / person / photo.name).symlink_to(photo)
    env = openlfr_env(data_dir)
    listing = ["--names-from", "folder", "--category", "other", "--reason", "test", "--legal-basis", "test data"]
    for args in (["watchlist", "create", name], ["watchlist", "import", name, str(folder), *listing]):
        done = run_openlfr(args, env)
        assert done.returncode == 0, done.stderr


def gallery_people(stills: Path, skip: tuple[str, ...] = ()) -> dict[str, list[Path]]:
    return {
        d.name: sorted(p for p in d.iterdir() if p.is_file())
        for d in sorted((stills / "gallery").iterdir())
        if d.is_dir() and d.name not in skip
    }


def hamilton_people(stills: Path) -> dict[str, list[Path]]:
    """The gallery and Lin-Manuel Miranda; the gallery's Alex Lacamoire is the same man as the still: one person
    with two photos."""
    people = gallery_people(stills, skip=("alex_lacamoire",))
    people["lin-manuel-miranda"] = [stills / "lin-manuel-miranda.png"]
    people["alex-lacamoire"] = [stills / "alex-lacamoire.png", stills / "gallery" / "alex_lacamoire" / "img1.jpg"]
    return people


def lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_hamilton_alerts_for_the_listed_performer_only(tmp_path: Path) -> None:
    clip = require_data("video", "short_hamilton_clip.mp4")
    stills = require_data("stills")
    people = hamilton_people(stills)
    data_dir = tmp_path / "data"
    enrol(data_dir, "hamilton", people, tmp_path)

    done = run_openlfr(["scan", str(clip), "--watchlist", "hamilton", "--json"], openlfr_env(data_dir))
    assert done.returncode == 0, done.stderr
    output = lines(done.stdout)
    alerts = [o for o in output if o["type"] == "alert"]
    summary = output[-1]
    assert list(summary) == SUMMARY_KEYS and summary["type"] == "summary"
    assert all(list(a) == ALERT_KEYS for a in alerts)
    people_alerted = {a["person"] for a in alerts}
    assert "lin-manuel-miranda" in people_alerted
    assert people_alerted <= {"lin-manuel-miranda", "alex-lacamoire"}, f"false alert: {alerts}"
    tracks = [(a["person"], a["camera"], a["track"]) for a in alerts]
    assert len(tracks) == len(set(tracks)), "one alert per person per track"
    assert summary["alerts"] == len(alerts) and summary["frames"] == 275 and summary["faces_seen"] > 100

    database = sqlite3.connect(data_dir / "openlfr.db")
    rows = database.execute("SELECT person_ref, track_id, probe_jpeg, deployment_id, latency_ms FROM alerts").fetchall()
    assert sorted((r[0], r[1]) for r in rows) == sorted((a["person"], a["track"]) for a in alerts)
    assert all(r[2][:3] == b"\xff\xd8\xff" and r[3] is not None for r in rows), "probe JPEG, bound to the scan"
    (status, author, frames, faces, raised) = database.execute(
        "SELECT status, created_by, frames, faces_seen, alerts_raised FROM deployments"
    ).fetchone()
    assert (
        status == "ended"
        and author.startswith("cli:")
        and (frames, faces, raised) == (275, summary["faces_seen"], len(alerts))
    )
    actions = [r[0] for r in database.execute("SELECT action FROM audit_log ORDER BY seq")]
    assert actions[-2:] == ["scan.start", "scan.end"]


# ----- no trace -----

EMBEDDING_DIMENSION = MODEL_DIMENSION  # the default model's width: what a leaked embedding would look like


def embedding_like(blob: bytes, dimension: int = EMBEDDING_DIMENSION) -> set[tuple[float, ...]]:
    """Every run of ``dimension`` float32 values anywhere in ``blob`` that looks like a unit-norm embedding."""
    found: set[tuple[float, ...]] = set()
    for offset in range(4):
        usable = (len(blob) - offset) // 4
        if usable < dimension:
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            values = np.frombuffer(blob, "<f4", count=usable, offset=offset).astype(np.float64)
        values = np.where(np.isfinite(values) & (np.abs(values) < 1.0), values, 10.0)
        squares = np.concatenate([[0.0], np.cumsum(values * values)])
        norms = squares[dimension:] - squares[:-dimension]
        for start in np.nonzero(np.abs(norms - 1.0) < 1e-3)[0]:
            window = values[start : start + dimension]
            if np.count_nonzero(np.abs(window) > 1e-4) > 0.8 * dimension and np.abs(window).max() < 0.6:
                found.add(tuple(np.round(window, 4)))
    return found


def jpegs(blob: bytes) -> set[bytes]:
    """Every JPEG image embedded in ``blob``, known by its first kilobyte (headers and the start of its pixels)."""
    return {blob[m.start() : m.start() + 1024] for m in re.finditer(b"\xff\xd8\xff", blob)}


def table_rows(database: Path) -> dict[str, list[tuple[Any, ...]]]:
    connection = sqlite3.connect(database)
    names = [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {name: connection.execute(f'SELECT * FROM "{name}"').fetchall() for name in names}


def everything_in(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_pedestrians_raise_no_alert_and_leave_nothing_but_counts(tmp_path: Path) -> None:
    clip = require_data("video", "pedestrians_1080p.mp4")
    stills = require_data("stills")
    data_dir = tmp_path / "data"
    enrol(data_dir, "gallery", gallery_people(stills), tmp_path)
    # The audit key exists before the scan (the first audited action anywhere makes it).
    done = run_openlfr(["audit", "verify"], openlfr_env(data_dir))
    assert done.returncode == 0, done.stderr

    files_before = everything_in(data_dir)
    blob_before = b"".join(files_before.values())
    rows_before = table_rows(data_dir / "openlfr.db")
    embeddings_before, jpegs_before = embedding_like(blob_before), jpegs(blob_before)
    assert len(embeddings_before) >= 1 and len(jpegs_before) >= 7, "the search finds the watchlist's own data"

    done = run_openlfr(["scan", str(clip), "--watchlist", "gallery", "--json"], openlfr_env(data_dir))
    assert done.returncode == 0, done.stderr
    output = lines(done.stdout)
    assert [o["type"] for o in output] == ["camera", "summary"], "no alert"
    summary = output[-1]
    assert summary["alerts"] == 0 and summary["frames"] == 105
    assert summary["faces_seen"] > 100 and summary["tracks"] >= 3, "the passers-by were seen and counted"
    camera = output[0]
    assert camera["embeddings"] > 0, "faces were embedded (in memory) and compared"

    # The output and the logs: counts, no vectors, no images.
    logs = done.stdout + done.stderr
    assert not re.search(r"(-?\d\.\d{3,}\s*,\s*){16}", logs), "a list of numbers in the output"
    assert "/9j/" not in logs and not re.search(r"\"(embedding|probe_jpeg|chip|crop)\w*\"\s*:\s*[\[\"]", logs)

    # The data directory: no new file but SQLite's own journal, and nothing that looks like a face in any file.
    files_after = everything_in(data_dir)
    assert set(files_after) - set(files_before) <= {"openlfr.db-wal", "openlfr.db-shm"}
    blob_after = b"".join(files_after.values())
    assert embedding_like(blob_after) <= embeddings_before, "an embedding the watchlist did not have"
    assert jpegs(blob_after) <= jpegs_before, "an image the watchlist did not have"

    # The database: only the scan's record (counts) and its two audit entries are new.
    rows_after = table_rows(data_dir / "openlfr.db")
    changed = {t for t in rows_after if rows_after[t] != rows_before.get(t)}
    assert changed == {"deployments", "audit_log", "audit_head"}, changed
    assert rows_after["alerts"] == [] and rows_after["deliveries"] == []
    (deployment,) = rows_after["deployments"]
    assert not any(isinstance(value, bytes) for value in deployment)
    connection = sqlite3.connect(data_dir / "openlfr.db")
    frames, faces, tracks, raised = connection.execute(
        "SELECT frames, faces_seen, tracks, alerts_raised FROM deployments"
    ).fetchone()
    assert (frames, faces, tracks, raised) == (105, summary["faces_seen"], summary["tracks"], 0)
    new_audit = rows_after["audit_log"][len(rows_before["audit_log"]) :]
    assert [entry[5] for entry in new_audit] == ["scan.start", "scan.end"]
    end_details = json.loads(new_audit[-1][7])
    assert set(end_details) == {"frames", "faces_seen", "tracks", "alerts", "camera_errors", "interrupted"}
