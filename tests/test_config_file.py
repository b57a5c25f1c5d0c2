"""The configuration file (issue 19, item 4): ``openlfr.toml`` round-trips through ``openlfr config show`` with its
secrets redacted, the environment overrides it (flat and nested names), a misspelled key or section is refused
naming the nearest; and ``--log-format json`` writes one JSON object a line."""

from __future__ import annotations

import json
import logging
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openlfr.cli import logs
from openlfr.cli.main import app
from openlfr.config_file import REDACTED, section_table
from openlfr.errors import OpenLFRError
from openlfr.settings import Settings, get_settings
from openlfr.urls import redact_url

SECRETS = ("db-password-7731", "audit-key-material-0123456789abcdef", "hook-secret-5512")
FILE = f"""
data_dir = "/srv/openlfr"

[database]
url = "postgresql://lfr:{SECRETS[0]}@db.example.org:5432/openlfr"

[server]
host = "0.0.0.0"
port = 8500
session_hours = 8.5
cookie_secure = true

[audit]
key = "{SECRETS[1]}"

[enrolment]
min_sharpness = 28.0
watchlist_entry_days = 14.0

[retention]
probe_retention_seconds = 86400.0
snapshot_retention_seconds = 3600.0

[cameras]
allowed_hosts = "10.20.0.0/16,.cams.example.org"

[stream]
detect_interval_s = 0.25
min_face_px = 40

[sinks.control-room]
type = "webhook"
url = "https://alerts.example.org/hook"
secret = "{SECRETS[2]}"
events = ["alert", "decision"]
"""


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for variable in ("OPENLFR_DATABASE_URL", "OPENLFR_DATA_DIR", "OPENLFR_CONFIG"):
        monkeypatch.delenv(variable, raising=False)
    path = tmp_path / "openlfr.toml"
    path.write_text(FILE)
    monkeypatch.setenv("OPENLFR_CONFIG", str(path))
    get_settings.cache_clear()
    yield path
    get_settings.cache_clear()


def _invoke(*args: str) -> tuple[int, str, BaseException | None]:
    get_settings.cache_clear()
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output, result.exception


def test_config_show_round_trips_the_file_with_secrets_redacted(config_file: Path) -> None:
    code, shown, _ = _invoke("config", "show")
    assert code == 0, shown
    for secret in SECRETS:
        assert secret not in shown
    effective = tomllib.loads(shown)
    written = tomllib.loads(FILE)
    expected = {**written, "database": {"url": redact_url(written["database"]["url"])}, "audit": {"key": REDACTED}}
    expected["sinks"]["control-room"]["secret"] = REDACTED
    for section, values in expected.items():
        if not isinstance(values, dict):
            assert effective[section] == values, section
            continue
        for key, value in values.items() if section != "sinks" else ():
            assert effective[section][key] == value, (section, key)
    assert {k: effective["sinks"]["control-room"][k] for k in expected["sinks"]["control-room"]} == (
        expected["sinks"]["control-room"]
    )
    origins = {(row["section"], row["key"]): row["from"] for row in json.loads(_invoke("config", "show", "--json")[1])}
    assert origins["server", "port"] == f"file {config_file}"
    assert origins["", "data_dir"] == f"file {config_file}"
    assert origins["server", "max_json_bytes"] == "default"


def test_the_environment_overrides_the_file(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENLFR_SERVER_PORT", "8601")  # the flat names users and tests already set
    monkeypatch.setenv("OPENLFR_ENROLMENT__MIN_SHARPNESS", "30.5")  # nested, as pydantic-settings spells it
    monkeypatch.setenv("OPENLFR_STREAM_MIN_FACE_PX", "48")  # the stream section's own names beat its [stream]
    monkeypatch.setenv("OPENLFR_SINKS__CONTROL-ROOM__URL", "https://other.example.org/hook")
    get_settings.cache_clear()
    settings = get_settings()
    assert (settings.server_port, settings.enrol_min_sharpness, settings.stream.min_face_px) == (8601, 30.5, 48)
    assert settings.stream.detect_interval_s == 0.25 and settings.server_host == "0.0.0.0"
    assert settings.sinks["control-room"].url == "https://other.example.org/hook"
    origins = {(row["section"], row["key"]): row["from"] for row in json.loads(_invoke("config", "show", "--json")[1])}
    assert origins["server", "port"] == "environment OPENLFR_SERVER_PORT"
    assert origins["enrolment", "min_sharpness"] == "environment OPENLFR_ENROLMENT__MIN_SHARPNESS"
    assert origins["stream", "min_face_px"] == "environment OPENLFR_STREAM_MIN_FACE_PX"
    assert origins["stream", "detect_interval_s"] == f"file {config_file}"


@pytest.mark.parametrize(
    ("wrong", "right", "says"),
    [
        ("port = 8500", "prot = 8500", "unknown key 'prot' in [server]; did you mean 'port'?"),
        ("[retention]", "[retension]", "unknown section [retension]; did you mean 'retention'?"),
        (
            "min_face_px = 40",
            "min_face_pix = 40",
            "unknown key 'min_face_pix' in [stream]; did you mean 'min_face_px'?",
        ),
        ('type = "webhook"', 'tpye = "webhook"', "in [sinks.control-room]; did you mean 'type'?"),
        ('data_dir = "/srv/openlfr"', 'datadir = "/srv/openlfr"', "top of the file; did you mean 'data_dir'?"),
    ],
)
def test_a_misspelled_key_is_refused_naming_the_nearest(config_file: Path, wrong: str, right: str, says: str) -> None:
    config_file.write_text(FILE.replace(wrong, right))
    code, output, error = _invoke("config", "check")
    assert isinstance(error, OpenLFRError) and says in str(error), (code, output, error)


def test_config_check_and_a_refused_value(config_file: Path, tmp_path: Path) -> None:
    code, output, _ = _invoke("--config", str(config_file), "config", "check")
    assert code == 0 and "configuration OK" in output, output
    config_file.write_text(FILE.replace("port = 8500", "port = 99999"))
    _, _, error = _invoke("config", "check")
    assert isinstance(error, OpenLFRError) and "[server] port" in str(error) and "65535" in str(error)
    _, _, error = _invoke("--config", str(tmp_path / "absent.toml"), "config", "check")
    assert isinstance(error, OpenLFRError) and "no such configuration file" in str(error)


def test_every_setting_has_one_place_in_the_file() -> None:
    table = section_table(Settings.model_fields)
    placed = [field for keys in table.values() for field in keys.values()]
    assert sorted(placed) == sorted(set(Settings.model_fields) - {"stream", "sinks"})


def test_json_logs_are_one_object_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("json")
    try:
        logging.getLogger("openlfr.test").warning("camera %s lost", "entrance")
    finally:
        logs.configure("text")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    entry = json.loads(line)
    assert (entry["level"], entry["logger"], entry["message"]) == ("warning", "openlfr.test", "camera entrance lost")
