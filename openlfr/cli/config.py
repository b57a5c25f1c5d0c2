"""``openlfr config show`` (the effective configuration as a configuration file, secrets redacted, each value's
origin as a comment) and ``openlfr config check``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from openlfr.cli.common import JsonOption, get_settings
from openlfr.cli.help_text import App

if TYPE_CHECKING:
    from openlfr.settings import Settings

config_app = App(help="The configuration file (openlfr.toml) and the environment over it.", no_args_is_help=True)

DEFAULT = "default"


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")


def effective(settings: Settings) -> list[tuple[str, str, Any, str]]:
    """(section, key, value as it may be shown, origin) for every setting, sections in the file's order."""
    from openlfr.config_file import REDACTED, SECRET_FIELDS, SECRET_SINK_KEYS, STREAM, config_path, origins
    from openlfr.config_file import section_table as table
    from openlfr.settings import Settings
    from openlfr.urls import redact_url

    came_from = origins(Settings, config_path())
    rows: list[tuple[str, str, Any, str]] = []
    for section, keys in table(Settings.model_fields).items():
        for key, field in keys.items():
            value = getattr(settings, field)
            if field in SECRET_FIELDS and value is not None:
                value = REDACTED
            elif field == "database_url" and value is not None:
                value = redact_url(value)
            rows.append((section, key, value, came_from.get((section, key), DEFAULT)))
    for key in type(settings.stream).model_fields:
        rows.append((STREAM, key, getattr(settings.stream, key), came_from.get((STREAM, key), DEFAULT)))
    for name, sink in settings.sinks.items():
        for key in type(sink).model_fields:
            value = getattr(sink, key)
            shown = REDACTED if key in SECRET_SINK_KEYS and value is not None else value
            rows.append((f"sinks.{name}", key, shown, came_from.get((f"sinks.{name}", key), DEFAULT)))
    return rows


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, list | tuple):  # (a sink's events)
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(str(value))  # JSON's string escapes are TOML's basic-string escapes


def as_toml(rows: list[tuple[str, str, Any, str]]) -> str:
    """The rows as a configuration file that reads back to the same values (unset ones commented out)."""
    lines: list[str] = []
    current: str | None = None
    for section, key, value, origin in sorted(rows, key=lambda row: row[0] != ""):  # stable: top keys first
        if section != current:
            if section:
                lines += ["", f"[{section}]"]
            current = section
        if value is None:
            lines.append(f"# {key} = (not set)  # {origin}")
        else:
            lines.append(f"{key} = {_toml_value(value)}  # {origin}")
    return "\n".join(lines).lstrip("\n") + "\n"


@config_app.command("show")
def config_show(as_json: JsonOption = False) -> None:
    """Print the effective configuration as an openlfr.toml: every secret redacted, where each value came from
    (the file, an OPENLFR_* variable, or the default) as a comment."""
    rows = effective(get_settings())
    if as_json:
        shown = [
            {"section": s, "key": k, "value": v if not isinstance(v, Path) else str(v), "from": o}
            for s, k, v, o in rows
        ]
        typer.echo(json.dumps(shown))
        return
    typer.echo(as_toml(rows), nl=False)


@config_app.command("check")
def config_check() -> None:
    """Check the configuration file and the OPENLFR_* variables: exit 2 naming the first key or value refused."""
    from openlfr.config_file import config_path
    from openlfr.store.db import normalise_url

    settings = get_settings()
    normalise_url(settings.resolved_database_url())
    rows = effective(settings)
    from_file = sum(1 for row in rows if row[3].startswith("file "))
    from_environment = sum(1 for row in rows if row[3].startswith("environment "))
    where = f"{config_path()}" if config_path() is not None else "no configuration file"
    typer.echo(
        f"configuration OK: {where}; {from_file} value(s) from the file, {from_environment} from the environment"
    )
