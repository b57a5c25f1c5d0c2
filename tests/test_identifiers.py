"""Names and ids read as what they are: a bidirectional override (U+202E), a zero-width or other format character,
a control, private-use or unassigned code point, a line or paragraph separator is refused in every identifier
and display name, at every front door (the API's bodies, the command line, a folder import), with one sentence
naming the field and the character; ordinary names in any script still pass."""

from __future__ import annotations

import io
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from openlfr.errors import InvalidText
from openlfr.governance.roles import Role
from openlfr.text import visible_text
from tests.conftest import OPENLFR_BIN
from tests.enrol_photos import make_photos
from tests.serverkit import PASSWORD, add_cast, add_watchlist, build_app, configure, draft_body, login

RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: "\u202eevil_rtl" shows as "ltr_live"
HIDDEN = [
    RLO,
    "\u2066",
    "\u200b",
    "\u00ad",
    "\x1b",
    "\x7f",
    "\x85",
    "\ue000",
    "\u0378",
    "\u2028",
    "\u2029",
    "\U000e0041",
]
PERSIAN_NAME = "\u0645\u06cc\u200c\u0631\u0648\u06cc"  # "Mi-ravi": the zero-width non-joiner is part of the spelling


@pytest.mark.parametrize("char", HIDDEN, ids=lambda c: f"U+{ord(c):04X}")
def test_hidden_characters_are_refused_naming_the_field_and_the_character(char: str) -> None:
    for kind in ({}, {"names": True}, {"lines": True}):
        with pytest.raises(InvalidText) as refused:
            visible_text(f"evil{char}rtl", "the person's id", **kind)
        message = str(refused.value)
        assert message.startswith("the person's id contains ") and f"U+{ord(char):04X}" in message
        assert "\n" not in message and char not in message


def test_ordinary_names_in_any_script_pass() -> None:
    for name in ("Zoë O'Brien-Ñúñez", "王小明", "Σωκράτης", "محمد علي", "שרה", "Dương Văn Minh", "मोहन दास"):
        assert visible_text(name, "the display name", names=True) == name
    assert visible_text(PERSIAN_NAME, "the display name", names=True) == PERSIAN_NAME
    with pytest.raises(InvalidText):  # an id may not hold a joiner: two ids would look the same
        visible_text(PERSIAN_NAME, "the person's id")
    assert visible_text("first line\nsecond\tline", "the purpose", lines=True)
    with pytest.raises(InvalidText):
        visible_text("one\nline", "the place", names=True)


def openlfr(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(OPENLFR_BIN), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_the_command_line_and_a_folder_import_refuse_a_bidi_id(tmp_path: Path, astronaut: np.ndarray) -> None:
    photos = make_photos(tmp_path / "photos", astronaut)
    assert openlfr("watchlist", "create", "event-1").returncode == 0
    folder = tmp_path / "people"
    (folder / f"{RLO}evil_rtl").mkdir(parents=True)
    (folder / f"{RLO}evil_rtl" / "face.png").write_bytes(photos.face.read_bytes())
    imported = openlfr("watchlist", "import", "event-1", folder, "--names-from", "folder", "--workers", "1", "--json")
    assert imported.returncode == 1, imported.stderr
    (row,) = json.loads(imported.stdout)["people"]
    assert row["status"] == "refused" and any("U+202E" in reason for reason in row["reasons"]), row
    table = openlfr("watchlist", "import", "event-1", folder, "--names-from", "folder", "--workers", "1")
    assert RLO not in table.stdout + table.stderr  # the refused id is shown escaped, never as it would display

    enrolled = openlfr(
        "watchlist",
        "add",
        "event-1",
        "--person",
        "P1",
        "--name",
        f"Ann{RLO}ie",
        "--category",
        "other",
        "--image",
        photos.face,
    )
    created = openlfr("watchlist", "create", "list\u2066two")
    for refused, fragment in ((enrolled, "display name"), (created, "watchlist name")):
        assert refused.returncode != 0
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and fragment in lines[0] and "U+" in lines[0], refused.stderr
    by = openlfr("watchlist", "create", "event-2", "--by", f"PC 123{RLO}4")
    user = subprocess.run(
        [str(OPENLFR_BIN), "users", "create", "zed", "--role", "operator", "--name", f"Zed{RLO}", "--password-stdin"],
        input="Quartz-Heron-Lantern-1987\nQuartz-Heron-Lantern-1987\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    cameras = tmp_path / "cameras.toml"
    cameras.write_text(f'[[camera]]\nname = "door{RLO}way"\nurl = "{photos.face}"\n')
    scan = openlfr("scan", "--watchlist", "event-1", "--cameras", cameras)
    for refused, fragment in ((by, "--by"), (user, "display name"), (scan, "the name of camera 1")):
        assert refused.returncode != 0 and fragment in refused.stderr and "U+202E" in refused.stderr, refused.stderr
    listing = json.loads(openlfr("watchlist", "list", "--json").stdout)["watchlists"]
    assert [(w["name"], w["active_people"]) for w in listing] == [("event-1", 0)]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OPENLFR_DATA_DIR", str(tmp_path_factory.mktemp("data")))
        configure(patch)
        application = build_app()
        add_cast(application, "ann", "olly", "ava")
        add_watchlist(application)
        yield login(application, "ann"), login(application, "olly"), login(application, "ava")
        application.state.server.store.close()


def test_the_api_refuses_hidden_characters_in_names_and_ids(client, astronaut) -> None:  # type: ignore[no-untyped-def]
    admin, drafter, authoriser = client
    buffer = io.BytesIO()
    Image.fromarray(astronaut[0:300, 80:380]).save(buffer, "PNG")
    face_png = buffer.getvalue()
    start = datetime.now(UTC) + timedelta(hours=1)
    refusals = [
        (admin, "/api/watchlists", {"name": f"list{RLO}x", "purpose": "tests"}, "name"),
        (
            admin,
            "/api/users",
            {"username": "zed", "password": PASSWORD, "role": Role.OPERATOR.value, "display_name": f"Zed{RLO}"},
            "display_name",
        ),
        (drafter, "/api/deployments", draft_body(start, name=f"High{RLO}street"), "name"),
        (drafter, "/api/deployments", draft_body(start, place="High Street\u2028Station"), "place"),
        (drafter, "/api/deployments", draft_body(start, purpose=f"Find{RLO} people"), "purpose"),
        (drafter, "/api/deployments", draft_body(start, watchlist="wanted\u200b"), "watchlist"),
    ]
    for who, url, body, field in refusals:
        answer = who.post(url, json=body)
        assert 400 <= answer.status_code < 500, (url, field, answer.text)
        assert field in answer.text and "U+" in answer.text, answer.text
    form = {"person": f"{RLO}evil_rtl", "display_name": "Evil", "category": "other"}
    enrolled = admin.post("/api/watchlists/wanted/people", data=form, files=[("images", ("face.png", face_png))])
    assert enrolled.status_code == 422 and "U+202E" in enrolled.text and RLO not in enrolled.text, enrolled.text
    assert [w["name"] for w in admin.get("/api/watchlists").json()] == ["wanted"]
    assert "zed" not in [u["username"] for u in admin.get("/api/users").json()]
    assert drafter.get("/api/deployments").json() == []

    drafted = drafter.post("/api/deployments", json=draft_body(start, place=f"Bazaar of {PERSIAN_NAME}"))
    assert drafted.status_code == 201, drafted.text
    cancelled = authoriser.post(f"/api/deployments/{drafted.json()['id']}/cancel", json={"reason": f"wrong{RLO} place"})
    assert cancelled.status_code == 422 and "reason" in cancelled.text, cancelled.text
