"""`openlfr watchlist ...` as a user runs it (the installed command, in a subprocess), on SQLite and on a
real PostgreSQL server. Refusals are one line on stderr, exit 2, and leave the watchlist as it was."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import OPENLFR_BIN, require_data
from tests.enrol_photos import Photos, make_photos
from tests.serverkit import MODEL_ID


def openlfr(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(OPENLFR_BIN), *map(str, args)], capture_output=True, text=True, timeout=300)


def ok(*args: object) -> str:
    result = openlfr(*args)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def as_json(*args: object) -> Any:
    return json.loads(ok(*args, "--json"))


def one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    return lines[0]


# what a folder import without people.csv must be told for everyone
LISTING = ("--reason", "a test import", "--legal-basis", "none: test photos")
FROM_FOLDERS = ("--names-from", "folder", "--category", "other", *LISTING)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Photos:
    return make_photos(tmp_path_factory.mktemp("photos"), astronaut)


def test_every_command_works(store_url: str, photos: Photos, tmp_path: Path) -> None:
    created = as_json("watchlist", "create", "event-1", "--purpose", "a test deployment", "--by", "officer-a")
    assert created["name"] == "event-1" and created["created_by"] == "officer-a"
    one_line_error(openlfr("watchlist", "create", "event-1"), "already exists")

    person = as_json(
        "watchlist", "add", "event-1", "--person", "P-001", "--name", "Eileen Collins", "--category",
        "wanted_court", "--reason", "warrant 42", "--legal-basis", "custody image", "--expires", "14d",
        "--image", photos.face,
    )  # fmt: skip
    assert person["id"] == "P-001" and person["category"] == "wanted_court" and person["active"]
    (image,) = person["images"]
    assert image["quality"]["inter_eye_px"] > 40 and image["model_id"] == MODEL_ID
    # More photos of someone listed: no name or category needed.
    person = as_json("watchlist", "add", "event-1", "--person", "P-001", "--image", photos.face_again)
    assert [Path(i["source"]).name for i in person["images"]] == ["face.png", "face_again.jpg"]

    folder = tmp_path / "people"
    for name, photo in (("Q-002", photos.face), ("R-003", photos.blurred)):
        (folder / name).mkdir(parents=True)
        shutil.copy(photo, folder / name / photo.name)
    imported = openlfr(
        "watchlist", "import", "event-1", folder, "--names-from", "folder", "--category", "missing_vulnerable",
        *LISTING, "--workers", "1", "--json",
    )  # fmt: skip
    assert imported.returncode == 1, imported.stderr  # some were refused
    summary = json.loads(imported.stdout)
    assert (summary["enrolled"], summary["refused"], summary["skipped"]) == (0, 2, 0)
    by_id = {p["id"]: p for p in summary["people"]}
    assert "looks like P-001" in by_id["Q-002"]["reasons"][0]
    assert "face too blurred" in by_id["R-003"]["reasons"][0]
    imported = openlfr(
        "watchlist", "import", "event-1", folder, "--names-from", "folder", "--category", "other", *LISTING,
        "--allow-duplicate", "--workers", "1", "--json",
    )  # fmt: skip
    by_id = {p["id"]: p for p in json.loads(imported.stdout)["people"]}
    assert by_id["Q-002"]["status"] == "enrolled" and by_id["R-003"]["status"] == "refused"
    table = openlfr(
        "watchlist", "import", "event-1", folder, "--names-from", "folder", "--category", "other", *LISTING,
        "--workers", "1",
    )  # fmt: skip
    assert "skipped" in table.stdout and "already on the list" in table.stdout and "R-003" in table.stdout

    (listed,) = as_json("watchlist", "list")["watchlists"]
    assert (listed["name"], listed["active_people"], listed["expired_people"], listed["images"]) == ("event-1", 2, 0, 3)
    assert "event-1" in ok("watchlist", "list")

    shown = as_json("watchlist", "show", "event-1")
    assert [p["id"] for p in shown["people"]] == ["P-001", "Q-002"]
    assert "embedding" not in json.dumps(shown)  # biometric vectors never leave through the CLI
    assert "Eileen Collins" in ok("watchlist", "show", "event-1", "--person", "P-001")

    assert "expired Q-002" in ok("watchlist", "expire", "event-1", "--person", "Q-002")
    shown = {p["id"]: p for p in as_json("watchlist", "show", "event-1")["people"]}
    assert shown["Q-002"]["active"] is False and shown["P-001"]["active"] is True
    assert as_json("watchlist", "list")["watchlists"][0]["expired_people"] == 1

    assert "removed P-001 and 2 photo(s)" in ok("watchlist", "remove", "event-1", "--person", "P-001")
    one_line_error(openlfr("watchlist", "remove", "event-1"), "add --yes")
    assert [p["id"] for p in as_json("watchlist", "show", "event-1")["people"]] == ["Q-002"]
    ok("watchlist", "remove", "event-1", "--yes", "--by", "officer-b")
    assert as_json("watchlist", "list") == {"watchlists": []}

    # Every change was audited, in order, by whom, on an intact chain; refusals changed nothing, so left no entry.
    from openlfr.services.audit_log import audit_key, verify
    from openlfr.settings import get_settings
    from openlfr.store import open_store
    from openlfr.store.governance_models import AuditEntry

    store = open_store(get_settings())
    with store.session() as session:
        entries = session.query(AuditEntry).order_by(AuditEntry.seq).all()
        assert [(e.action, e.target) for e in entries] == [
            ("watchlist.create", "watchlist:event-1"),
            ("watchlist.enrol", "watchlist:event-1/person:P-001"),
            ("watchlist.enrol", "watchlist:event-1/person:P-001"),
            ("watchlist.enrol", "watchlist:event-1/person:Q-002"),
            ("watchlist.expire", "watchlist:event-1/person:Q-002"),
            ("watchlist.remove_person", "watchlist:event-1/person:P-001"),
            ("watchlist.remove", "watchlist:event-1"),
        ]
        assert entries[0].actor == "officer-a" and entries[-1].actor == "officer-b"
        assert {e.role for e in entries} == {"cli"}
        assert entries[3].details["allow_duplicate"] is True
        assert verify(session, audit_key(get_settings())).ok
    store.close()


PEOPLE_CSV = """id,name,category,reason,legal_basis
A,Ann Example,missing_vulnerable,warrant 7,custody image
B,Bea Example,,,custody image
C,Cy Example,other,warrant 9,
E,Eve Example,other,warrant 11,custody image
"""


def test_import_takes_who_each_person_is_from_people_csv(photos: Photos, tmp_path: Path) -> None:
    """Names, categories, reasons and legal bases from people.csv, blanks filled by the command's options; a person
    with no legal basis, a folder with no row and a row with no folder are each refused; the others enrolled."""
    ok("watchlist", "create", "w")
    folder = tmp_path / "people"
    for person, photo in (("A", photos.face), ("B", photos.face_again), ("C", photos.face), ("D", photos.face)):
        (folder / person).mkdir(parents=True)
        shutil.copy(photo, folder / person / photo.name)
    (folder / "people.csv").write_text(PEOPLE_CSV)
    imported = openlfr(
        "watchlist", "import", "w", folder, "--category", "wanted_court", "--reason", "operation x",
        "--allow-duplicate", "--workers", "1", "--json",
    )  # fmt: skip
    assert imported.returncode == 1, imported.stderr
    summary = json.loads(imported.stdout)
    by_id = {p["id"]: p for p in summary["people"]}
    assert {i: p["status"] for i, p in by_id.items()} == {
        "A": "enrolled", "B": "enrolled", "C": "refused", "D": "refused", "E": "refused"
    }  # fmt: skip
    assert summary["ignored"] == []  # people.csv is no stray file
    assert "no legal basis" in by_id["C"]["reasons"][0] and "--legal-basis" in by_id["C"]["reasons"][0]
    assert "no row for this folder in people.csv" in by_id["D"]["reasons"][0]
    assert "no sub-folder" in by_id["E"]["reasons"][0]
    shown = {p["id"]: p for p in as_json("watchlist", "show", "w")["people"]}
    assert [(p["name"], p["category"], p["reason"], p["legal_basis"]) for p in shown.values()] == [
        ("Ann Example", "missing_vulnerable", "warrant 7", "custody image"),
        ("Bea Example", "wanted_court", "operation x", "custody image"),
    ]

    # Without people.csv the command must be told the folder names are the names: one line, nothing written.
    (folder / "people.csv").unlink()
    line = one_line_error(openlfr("watchlist", "import", "w", folder, "--workers", "1"), "no people.csv")
    assert "--names-from folder" in line
    # Told so, but with no legal basis for anyone: everyone new is refused before any photo is analysed.
    imported = openlfr(
        "watchlist", "import", "w", folder, "--names-from", "folder", "--category", "other", "--reason", "r",
        "--workers", "1", "--json",
    )  # fmt: skip
    assert imported.returncode == 1, imported.stderr
    by_id = {p["id"]: p for p in json.loads(imported.stdout)["people"]}
    assert {i: p["status"] for i, p in by_id.items()} == {
        "A": "skipped",
        "B": "skipped",
        "C": "refused",
        "D": "refused",
    }
    assert all("no legal basis" in by_id[i]["reasons"][0] for i in "CD")
    assert list(as_json("watchlist", "show", "w")["people"]) == list(shown.values())


def test_expire_everyone_at_a_time(store_url: str, photos: Photos) -> None:
    ok("watchlist", "create", "w")
    ok("watchlist", "add", "w", "--person", "A", "--name", "A", "--category", "other", "--image", photos.face)
    assert "will stop being searched at" in ok("watchlist", "expire", "w", "--at", "2h")
    assert as_json("watchlist", "show", "w")["people"][0]["active"] is True
    assert "expired 1 people" in ok("watchlist", "expire", "w")
    assert as_json("watchlist", "show", "w")["people"][0]["active"] is False
    assert "nothing to change" in ok("watchlist", "expire", "w")


REFUSALS = [
    ("no_face", "no face found"),
    ("two_faces", "2 faces found; enrol from a photo of one person, or choose one with --face 1..2"),
    ("small", "face too small"),
    ("blurred", "face too blurred"),
    ("truncated", "damaged or truncated"),
]


def test_refusals_are_one_line_and_write_nothing(photos: Photos) -> None:
    ok("watchlist", "create", "w")
    for photo, reason in REFUSALS:
        bad = getattr(photos, photo)
        # The first photo would pass on its own; the whole enrolment is refused.
        result = openlfr(
            "watchlist", "add", "w", "--person", "B", "--name", "B", "--category", "other",
            "--image", photos.face, "--image", bad,
        )  # fmt: skip
        line = one_line_error(result, reason)
        assert "B not enrolled, nothing written" in line and bad.name in line
    assert as_json("watchlist", "show", "w")["people"] == []


def test_a_duplicate_is_refused_in_one_line_and_writes_nothing(photos: Photos) -> None:
    ok("watchlist", "create", "w")
    ok("watchlist", "add", "w", "--person", "A", "--name", "Person A", "--category", "other", "--image", photos.face)
    before = as_json("watchlist", "show", "w")
    result = openlfr(
        "watchlist", "add", "w", "--person", "B", "--name", "B", "--category", "other", "--image", photos.face_again
    )
    line = one_line_error(result, "face_again.jpg: looks like A (Person A), already on the list (match score ")
    score = re.search(r"match score (\d\.\d+) >=", line)
    assert score is not None and float(score.group(1)) >= 0.9, line  # the same face re-encoded
    assert as_json("watchlist", "show", "w") == before
    # Several faces and an explicit choice: the choice is honoured (and here, is the same person again).
    result = openlfr(
        "watchlist", "add", "w", "--person", "C", "--name", "C", "--category", "other",
        "--image", photos.two_faces, "--face", "largest",
    )  # fmt: skip
    one_line_error(result, "looks like A")


USER_ERRORS = [
    (("watchlist", "add", "nowhere", "--person", "A", "--image", "x.jpg"), "no watchlist named 'nowhere'"),
    (("watchlist", "add", "w", "--image", "x.jpg"), "--person"),
    (("watchlist", "add", "w", "--person", "A"), "at least one photo"),
    (("watchlist", "add", "w", "--person", "A", "--category", "rude", "--image", "x.jpg"), "unknown category"),
    (("watchlist", "add", "w", "--person", "A", "--expires", "soonish", "--image", "x.jpg"), "cannot read"),
    (("watchlist", "add", "w", "--person", "A", "--face", "0", "--image", "x.jpg"), "--face counts from 1"),
    (("watchlist", "import", "w", "/no/such/folder"), "no such folder"),
    (("watchlist", "show", "w", "--person", "Z"), "nobody with id 'Z'"),
    (("watchlist", "remove", "w", "--person", "Z"), "nobody with id 'Z'"),
    (("watchlist", "expire", "w", "--at", "yesterday-ish"), "cannot read"),
    (("watchlist", "create", "../etc"), "not a usable watchlist name"),
]


def test_user_errors_are_one_clear_line() -> None:
    ok("watchlist", "create", "w")
    for args, fragment in USER_ERRORS:
        one_line_error(openlfr(*args), fragment)


def test_a_new_person_needs_name_and_category(photos: Photos) -> None:
    ok("watchlist", "create", "w")
    one_line_error(openlfr("watchlist", "add", "w", "--person", "A", "--image", photos.face), "needs a display name")
    assert as_json("watchlist", "show", "w")["people"] == []


def test_an_unreachable_database_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.postgres import _free_port

    monkeypatch.setenv("OPENLFR_DATABASE_URL", f"postgresql://u:secret@127.0.0.1:{_free_port()}/x")
    line = one_line_error(openlfr("watchlist", "list"), "cannot open database")
    assert "secret" not in line


@pytest.mark.data
def test_import_the_shared_gallery_then_rerun(tmp_path: Path) -> None:
    gallery = require_data("stills", "gallery")
    stills = require_data("stills")
    ok("watchlist", "create", "hamilton")
    ok(
        "watchlist", "add", "hamilton", "--person", "lin-manuel-miranda", "--name", "Lin-Manuel Miranda",
        "--category", "wanted_offence", "--image", stills / "lin-manuel-miranda.png",
    )  # fmt: skip
    ok(
        "watchlist", "add", "hamilton", "--person", "alex-lacamoire", "--name", "Alex Lacamoire",
        "--category", "other", "--image", stills / "alex-lacamoire.png",
    )  # fmt: skip
    summary = json.loads(openlfr("watchlist", "import", "hamilton", gallery, *FROM_FOLDERS, "--json").stdout)
    # Seven different people; the gallery's photo of Alex Lacamoire is another photo of a listed person, but
    # not so alike as to be refused (match score 0.75 at the default 0.80), so all are enrolled.
    assert (summary["enrolled"], summary["refused"], summary["skipped"]) == (7, 0, 0), summary
    again = json.loads(
        openlfr("watchlist", "import", "hamilton", gallery, *FROM_FOLDERS, "--workers", "1", "--json").stdout
    )
    assert (again["enrolled"], again["skipped"]) == (0, 7)
    (listed,) = as_json("watchlist", "list")["watchlists"]
    assert (listed["active_people"], listed["images"]) == (9, 11)


def test_without_by_the_keyboard_user_is_named_as_every_command_names_them() -> None:
    """One actor format at the keyboard: `cli:<login>` (as `users`, `scan` and `audit` record it), unless `--by`."""
    import getpass

    from openlfr.services.audit_log import audit_key, verify
    from openlfr.settings import get_settings
    from openlfr.store import open_store
    from openlfr.store.governance_models import AuditEntry

    created = as_json("watchlist", "create", "w")
    assert created["created_by"] == f"cli:{getpass.getuser()}"
    ok("watchlist", "remove", "w", "--yes", "--by", "officer-c")
    store = open_store(get_settings())
    with store.session() as session:
        entries = session.query(AuditEntry).order_by(AuditEntry.seq).all()
        assert [(e.actor, e.role, e.action) for e in entries] == [
            (f"cli:{getpass.getuser()}", "cli", "watchlist.create"),
            ("officer-c", "cli", "watchlist.remove"),
        ]
        assert verify(session, audit_key(get_settings())).ok
    store.close()
