"""The configuration file, ``openlfr.toml`` (its path from ``OPENLFR_CONFIG`` or ``openlfr --config``): sections of
the one flat ``Settings`` object, read by pydantic-settings' ``TomlConfigSettingsSource``.

``Settings`` stays flat (``settings.server_port``): some seventy fields are read as such across the code and the
flat ``OPENLFR_*`` names are what users and tests set. A table (``section_table``) maps each ``[section] key`` of
the file onto a field instead: ``[server] port`` is ``server_port``, ``[retention] probe_retention_seconds`` is
itself. ``[stream]`` is the nested ``StreamSettings``; ``[sinks.NAME]`` a table of ``SinkSettings``. A key the table
does not know is refused naming the nearest one it does. The environment overrides the file, by the old flat names
(``OPENLFR_SERVER_PORT``) or nested with ``__`` as pydantic-settings spells it (``OPENLFR_SERVER__PORT``).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, TomlConfigSettingsSource

from openlfr.errors import OpenLFRError

CONFIG_VARIABLE = "OPENLFR_CONFIG"
ENV_PREFIX = "OPENLFR_"
NESTED = "__"
STREAM, SINKS = "stream", "sinks"

# A section's key is the field's name without the section's prefix ...
_PREFIXES = {
    "database": "database_",
    "server": "server_",
    "metrics": "metrics_",
    "login": "login_",
    "argon2": "argon2_",
    "audit": "audit_",
    "enrolment": "enrol_",
    "matching": "search_",
    "rfr": "rfr_",
    "cameras": "camera_",
    "scan": "scan_",
}
# ... or, for these, the field's whole name. Fields no section claims are keys at the top of the file.
_MEMBERS = {
    "server": ("session_hours", "cookie_secure", "max_upload_bytes", "max_upload_pixels", "max_json_bytes"),
    "faces": (
        "detector",
        "detector_scale",
        "detector_min_score",
        "upsample",
        "onnx_threads",
        "execution_provider",
        "embedder",
        "embedder_model",
        "flip_average",
        "stills_jitter",
        "stills_second_alignment",
        "max_image_pixels",
    ),
    "matching": ("calibration_file",),
    "enrolment": ("watchlist_entry_days",),
    "retention": (
        "snapshot_retention_seconds",
        "probe_retention_seconds",
        "expired_entry_retention_seconds",
        "retention_interval_seconds",
    ),
    "deployments": (
        "deployment_max_window_hours",
        "time_zone",
        "pipeline_max_same_failures",
        "worker_name",
        "require_second_verifier",
        "tile_blur_scene",
    ),
}
TOP = ""  # the "section" of the keys at the top of the file

# Values never shown (``openlfr config show`` prints this instead); the database URL is shown without its password.
REDACTED = "<redacted>"
SECRET_FIELDS = frozenset({"audit_key", "camera_key"})
SECRET_SINK_KEYS = frozenset({"secret"})


class ConfigError(OpenLFRError):
    """The configuration file cannot be read, or names a section or key that does not exist."""


SinkEvent = Literal["alert", "decision", "camera"]
SINK_EVENTS: tuple[SinkEvent, ...] = ("alert", "decision", "camera")


class SinkSettings(BaseModel):
    """One sink: an entry of ``OPENLFR_SINKS`` (a JSON object, name -> these keys) or a ``[sinks.NAME]`` section.
    ``openlfr.alerts.outbox`` sends it the events of the deployments that name it (docs/sinks.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["webhook", "mqtt", "jsonl"]
    url: str  # https://... for a webhook, mqtt://host:port/topic, or a file path for jsonl
    secret: str | None = None  # a webhook's HMAC signing secret or the broker's password: never shown
    secret_file: Path | None = None  # the same, read from a file (compose and systemd secrets)
    enabled: bool = True
    # What it hears of: alerts; decisions (an operator's decision, the second operator's verification, the outcome);
    # camera health. A deployment's events reach only the sinks it names.
    events: list[SinkEvent] = Field(default_factory=lambda: list(SINK_EVENTS))
    # The probe crop (base64 JPEG) in an alert's payload: off unless the admin opts in (audited when served).
    include_probe: bool = False
    timeout_seconds: float = Field(default=5.0, gt=0.0, le=60.0)  # one attempt's connect, send and answer
    username: str | None = None  # an MQTT broker's user (its password is the secret)

    @model_validator(mode="before")
    @classmethod
    def _kind_is_type(cls, value: Any) -> Any:
        """``kind`` was the key's first name (in files written before ``type``)."""
        if isinstance(value, dict) and "kind" in value and "type" not in value:
            value = {("type" if key == "kind" else key): item for key, item in value.items()}
        return value

    def secret_value(self) -> str | None:
        """The secret, read from ``secret_file`` when it names one (read each time: a rotated file takes effect)."""
        if self.secret_file is not None:
            return self.secret_file.read_text(encoding="utf-8").strip()
        return self.secret


SINK_KEYS = frozenset({*SinkSettings.model_fields, "kind"})


def section_table(fields: Iterable[str]) -> dict[str, dict[str, str]]:
    """``{section: {key: field}}`` for the flat fields (``TOP`` holds the unclaimed ones); each field once."""
    table: dict[str, dict[str, str]] = {TOP: {}}
    for field in fields:
        if field in (STREAM, SINKS):
            continue
        section = next((name for name, members in _MEMBERS.items() if field in members), None)
        if section is not None:
            table.setdefault(section, {})[field] = field
            continue
        section = next((name for name, prefix in _PREFIXES.items() if field.startswith(prefix)), TOP)
        key = field.removeprefix(_PREFIXES.get(section, ""))
        table.setdefault(section, {})[key] = field
    return table


def config_path() -> Path | None:
    """The configuration file named by ``OPENLFR_CONFIG`` (``--config`` sets it), or None: no file."""
    named = os.environ.get(CONFIG_VARIABLE, "").strip()
    return Path(named).expanduser() if named else None


def _nearest(word: str, choices: Iterable[str]) -> str:
    found = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.5)
    return f"; did you mean {found[0]!r}?" if found else ""


def _models(settings_cls: type[BaseSettings]) -> tuple[type[BaseModel], type[BaseModel]]:
    stream = settings_cls.model_fields[STREAM].annotation
    assert isinstance(stream, type) and issubclass(stream, BaseModel)
    return stream, SinkSettings


def read_file(settings_cls: type[BaseSettings], path: Path) -> dict[str, Any]:
    """The file's sections as parsed, every section and key checked against the settings (never applied here)."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such configuration file ({CONFIG_VARIABLE} or --config names it)")
    try:
        data = TomlConfigSettingsSource(settings_cls, toml_file=path).toml_data
    except (OSError, ValueError) as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise ConfigError(f"{path}: not a valid TOML file: {exc}") from None
    table = section_table(settings_cls.model_fields)
    stream_model, _ = _models(settings_cls)
    sections = {*table, STREAM, SINKS} - {TOP}
    for name, value in data.items():
        if not isinstance(value, dict):
            if name not in table[TOP]:
                raise ConfigError(f"{path}: unknown key {name!r} at the top of the file{_nearest(name, table[TOP])}")
            continue
        if name == SINKS:
            for sink, values in value.items():
                if not isinstance(values, dict):
                    raise ConfigError(f"{path}: [sinks] {sink!r} must be a section, [sinks.{sink}]")
                _check_keys(path, f"sinks.{sink}", values, SINK_KEYS)
            continue
        if name not in sections:
            raise ConfigError(f"{path}: unknown section [{name}]{_nearest(name, sections)}")
        _check_keys(path, name, value, stream_model.model_fields if name == STREAM else table[name])
    return data


def _check_keys(path: Path, section: str, values: Mapping[str, Any], known: Iterable[str]) -> None:
    for key in values:
        if key not in known:
            raise ConfigError(f"{path}: unknown key {key!r} in [{section}]{_nearest(key, known)}")


def flatten(settings_cls: type[BaseSettings], data: Mapping[str, Any]) -> dict[str, Any]:
    """The file's (or the nested environment's) sections as the settings' field names."""
    table = section_table(settings_cls.model_fields)
    out: dict[str, Any] = {}
    for name, value in data.items():
        if name in (STREAM, SINKS):
            out[name] = dict(value)
        elif isinstance(value, dict):
            out.update({table[name][key]: item for key, item in value.items()})
        else:
            out[table[TOP][name]] = value
    return out


def nested_environment(settings_cls: type[BaseSettings]) -> dict[str, Any]:
    """``OPENLFR_SECTION__KEY`` (and ``OPENLFR_SINKS__NAME__KEY``) variables as sections, like the file's."""
    table = section_table(settings_cls.model_fields)
    stream_model, _ = _models(settings_cls)
    out: dict[str, Any] = {}
    for variable, value in os.environ.items():
        upper = variable.upper()
        if not upper.startswith(ENV_PREFIX) or NESTED not in upper:
            continue
        parts = upper.removeprefix(ENV_PREFIX).lower().split(NESTED)
        section, rest = parts[0], parts[1:]
        if section == SINKS and len(rest) == 2:
            _check_keys(Path(variable), f"sinks.{rest[0]}", {rest[1]: None}, SINK_KEYS)
            out.setdefault(SINKS, {}).setdefault(rest[0], {})[rest[1]] = value
        elif len(rest) == 1 and (section == STREAM or section in table):
            known = stream_model.model_fields if section == STREAM else table[section]
            _check_keys(Path(variable), section, {rest[0]: None}, known)
            out.setdefault(section, {})[rest[0]] = value
    return out


class ConfigFileSource(PydanticBaseSettingsSource):
    """The file's values (below the environment): ``[stream]`` with the ``OPENLFR_STREAM_*`` variables on top."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self.data = read_file(settings_cls, path) if path is not None else {}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ answers for every field at once

    def __call__(self) -> dict[str, Any]:
        return flatten(self.settings_cls, self.data)


class NestedEnvSource(PydanticBaseSettingsSource):
    """``OPENLFR_SECTION__KEY`` variables (above the file, below the flat names)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return flatten(self.settings_cls, nested_environment(self.settings_cls))


def _environment_names() -> set[str]:
    return {name.upper() for name in os.environ}


def origins(settings_cls: type[BaseSettings], path: Path | None) -> dict[tuple[str, str], str]:
    """Where each ``(section, key)`` that is not at its default came from: the variable's name or the file's path,
    in the order the settings take them (flat variable, nested variable, file)."""
    data = read_file(settings_cls, path) if path is not None else {}
    present = _environment_names()
    out: dict[tuple[str, str], str] = {}

    def place(section: str, key: str, *variables: str) -> None:
        for variable in variables:
            if variable in present:
                out[section, key] = f"environment {variable}"
                return
        if section == TOP:
            found = key in data and not isinstance(data[key], dict)
        else:
            found = isinstance(data.get(section), dict) and key in data[section]
        if found:
            out[section, key] = f"file {path}"

    for section, keys in section_table(settings_cls.model_fields).items():
        for key, field in keys.items():
            nested = f"{ENV_PREFIX}{section.upper()}{NESTED}{key.upper()}"
            place(section, key, f"{ENV_PREFIX}{field.upper()}", nested)
    stream_model, _ = _models(settings_cls)
    for key in stream_model.model_fields:
        place(STREAM, key, f"{ENV_PREFIX}STREAM_{key.upper()}", f"{ENV_PREFIX}STREAM{NESTED}{key.upper()}")
    sinks = {**data.get(SINKS, {}), **nested_environment(settings_cls).get(SINKS, {})}
    for sink in sinks:
        for key in SinkSettings.model_fields:
            variable = f"{ENV_PREFIX}SINKS{NESTED}{sink.upper()}{NESTED}{key.upper()}"
            if variable in present:
                out[f"sinks.{sink}", key] = f"environment {variable}"
            elif key in data.get(SINKS, {}).get(sink, {}):
                out[f"sinks.{sink}", key] = f"file {path}"
    return out
