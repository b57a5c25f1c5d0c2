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
    """Send every logger's records through the root's one handler in the chosen format (WARNING and above)."""
    global _json_chosen
    _json_chosen = log_format == "json"
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if _json_chosen else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)


def uvicorn_log_config() -> dict[str, Any] | None:
    """uvicorn's own logging set-up, or None in JSON mode: its loggers then reach the root's JSON handler."""
    if _json_chosen:
        return None
    from uvicorn.config import LOGGING_CONFIG

    return LOGGING_CONFIG
