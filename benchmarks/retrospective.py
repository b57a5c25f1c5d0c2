"""Retrospective search (RFR) speed on the Hamilton clip, against `openlfr scan` of the same file in the same run.

A real `openlfr serve` app (uvicorn on 127.0.0.1, scheduler and retention running, SQLite in a temporary data
directory) with the watchlist of the tests (Lin-Manuel Miranda plus the gallery, uploaded through the API); a
retrospective deployment of the clip is drafted, authorised by someone else, and run by the scheduler. Printed:
the clip's length, the frames read, the analysis wall time (first frame read to last, from the audit entry
``deployment.processed``), the wall time from the start of the processing to its end (pipeline start-up, model
loading in the camera process, the end's bookkeeping), the alerts; then the same for `openlfr scan CLIP
--watchlist hamilton --json` (not realtime: the baseline, same pipeline without the deployment's governance), and
the ratios against real time and against the scan.

    .venv/bin/python benchmarks/retrospective.py [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from openlfr.vision.providers import provider_line

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.serverkit import FAST_HASHING, JUSTIFICATION, PASSWORD, clip_deployment_body  # noqa: E402

DATA = Path(os.environ.get("OPENLFR_TEST_DATA", ROOT.parent / "shared" / "data")).resolve()


def retrospective_run(clip: Path, stills: Path) -> dict[str, Any]:
    import sqlalchemy as sa

    from openlfr.governance.roles import Role
    from openlfr.store.governance_models import AuditEntry
    from tests.serverkit import LiveServer, add_user, build_app, enrol_upload, login

    app = build_app(background=True, pipelines=True)
    for name, role in [("ann", Role.ADMIN), ("ava", Role.AUTHORISER), ("abe", Role.AUTHORISER)]:
        add_user(app, name, role)
    with LiveServer(app):
        ann = login(app, "ann", PASSWORD)
        ann.post("/api/watchlists", json={"name": "hamilton", "purpose": "benchmark"})
        enrol_upload(ann, "hamilton", "LMM-001", "Lin-Manuel Miranda", [stills / "lin-manuel-miranda.png"])
        for folder in sorted((stills / "gallery").iterdir()):
            if folder.name != "alex_lacamoire":
                enrol_upload(ann, "hamilton", folder.name, folder.name, sorted(folder.iterdir()), "other")
        ava, abe = login(app, "ava"), login(app, "abe")
        body = {**clip_deployment_body(clip, "hamilton"), "kind": "retrospective"}
        deployment = ava.post("/api/deployments", json=body).json()
        abe.post(f"/api/deployments/{deployment['id']}/authorise", json={"justification": JUSTIFICATION})
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            state = ava.get(f"/api/deployments/{deployment['id']}").json()
            if state["processing_finished_at"]:
                break
            time.sleep(0.25)
        else:
            raise SystemExit(f"the search did not finish: {state}")
        alerts = [a["person_name"] for a in ava.get(f"/api/alerts?deployment={deployment['id']}").json()]
        with app.state.server.sessions() as db:
            processed = db.scalar(sa.select(AuditEntry).where(AuditEntry.action == "deployment.processed"))
            assert processed is not None
            details = dict(processed.details)
    app.state.server.store.close()
    started = datetime.fromisoformat(state["processing_started_at"])
    finished = datetime.fromisoformat(state["processing_finished_at"])
    return {
        "clip_s": round(state["media_seconds"], 2),
        "frames": state["frames"],
        "analysis_s": details["analysis_seconds"],
        "start_to_end_s": round((finished - started).total_seconds(), 2),
        "alerts": alerts,
    }


def scan_run(clip: Path) -> dict[str, Any]:
    begun = time.monotonic()
    answer = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "openlfr"), "scan", str(clip), "--watchlist", "hamilton", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.monotonic() - begun
    lines = [json.loads(line) for line in answer.stdout.splitlines() if line.startswith("{")]
    summary = next(line for line in lines if line.get("type") == "summary")
    alerts = [line["person"] for line in lines if line.get("type") == "alert"]
    return {
        "frames": summary["frames"],
        "analysis_s": round(summary["frames"] / summary["fps"], 2),
        "command_s": round(wall, 2),
        "alerts": alerts,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    print(provider_line(), file=sys.stderr, flush=True)  # what the figures were measured on
    clip, stills = DATA / "video" / "short_hamilton_clip.mp4", DATA / "stills"
    if not clip.exists():
        raise SystemExit(f"no clip at {clip} (set OPENLFR_TEST_DATA)")
    with tempfile.TemporaryDirectory(prefix="openlfr-rfr-bench-") as tmp:
        os.environ.update(FAST_HASHING)
        os.environ.update(OPENLFR_DATA_DIR=tmp, OPENLFR_RFR_SOURCE_DIRS=str(clip.parent))
        rfr = retrospective_run(clip, stills)
        scan = scan_run(clip)
    figures = {
        "retrospective": rfr,
        "scan": scan,
        "rfr_analysis_vs_real_time": round(rfr["analysis_s"] / rfr["clip_s"], 3),
        "rfr_start_to_end_vs_real_time": round(rfr["start_to_end_s"] / rfr["clip_s"], 3),
        "rfr_analysis_vs_scan": round(rfr["analysis_s"] / scan["analysis_s"], 3),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
