"""The log's format: ``text`` (a line a person reads) or ``json`` (one object a line, for a log collector), chosen by
``openlfr --log-format``. Messages never carry secrets (openlfr/urls.py redacts what does), in either format."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"
_json_chosen = False
_added: list[logging.Handler] = []  # handlers configure() added itself, removed when text is chosen again


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(log_format: str) -> None:
    """JSON: the root logger's stream handlers (``main`` sets one up) write JSON; text: as they were. Other
    handlers (a test runner's capture) are left alone."""
    global _json_chosen
    _json_chosen = log_format == "json"
    root = logging.getLogger()
    if not _json_chosen:
        for handler in list(root.handlers):
            if handler in _added:
                root.removeHandler(handler)
                _added.remove(handler)
            elif isinstance(handler.formatter, JsonFormatter):
                handler.setFormatter(logging.Formatter(TEXT_FORMAT))
        return
    plain = [handler for handler in root.handlers if type(handler) is logging.StreamHandler]
    if not plain:
        plain = [logging.StreamHandler()]
        root.addHandler(plain[0])
        _added.extend(plain)
        if root.level == logging.NOTSET or root.level > logging.WARNING:
            root.setLevel(logging.WARNING)
    for handler in plain:
        handler.setFormatter(JsonFormatter())


def uvicorn_log_config() -> dict[str, Any] | None:
    """uvicorn's own logging set-up, or None in JSON mode: its loggers then reach the root's JSON handler."""
    if _json_chosen:
        return None
    from uvicorn.config import LOGGING_CONFIG

    return LOGGING_CONFIG
