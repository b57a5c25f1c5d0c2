"""What the admin's system page shows of the stored state: the database (its kind and a redacted address), the data
directory, the sinks and their backlog, the audit chain (its size, its head, the last verification on record) and
retention's last entry in the audit log. ``openlfr.runtime.overview`` adds what only the running server knows.

Nothing here shows a secret: the database's address goes through ``redact_url``; a sink is shown by its name,
type and host, never its URL's path or query nor its signing secret; a sink's last error has them taken out.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from openlfr.alerts import outbox
from openlfr.clock import utc
from openlfr.config_file import SinkSettings
from openlfr.store.governance_models import AuditEntry
from openlfr.urls import redact_url, sink_error_text, url_destination

VERIFY_ACTION = "audit.verify"  # the API's, the console's and the CLI's check of the chain write this entry
RETENTION_ACTIONS = "retention."  # every entry retention writes (what it destroyed, an admin's run on demand)


@dataclass(frozen=True)
class DatabaseInfo:
    kind: str  # the SQLAlchemy dialect: sqlite, postgresql
    version: str  # the database server's version as the driver reported it ("" before the first connection)
    url: str  # redacted: never a password nor a query value


def database_info(engine: Engine) -> DatabaseInfo:
    dialect = engine.dialect
    found = getattr(dialect, "server_version_info", None)
    version = ".".join(str(part) for part in found) if found else ""
    return DatabaseInfo(dialect.name, version, redact_url(engine.url.render_as_string(hide_password=False)))


@dataclass(frozen=True)
class DataDirectory:
    path: str
    free_bytes: int | None  # None when the folder cannot be looked at (missing, no permission)
    total_bytes: int | None


def data_directory(path: Path) -> DataDirectory:
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return DataDirectory(str(path), None, None)
    return DataDirectory(str(path), usage.free, usage.total)


@dataclass(frozen=True)
class SinkState:
    name: str
    type: str
    enabled: bool
    events: list[str]
    destination: str  # the host (webhook, MQTT) or the file (jsonl): where, never with what credentials
    include_probe: bool
    pending: int  # the backlog: events not yet delivered nor given up
    failing_since: datetime | None
    attempts: int  # on the oldest event waiting
    last_error: str | None
    given_up: int


def _destination(sink: SinkSettings) -> str:
    return sink.url if sink.type == "jsonl" else url_destination(sink.url)


def _without_secrets(text: str | None, sink: SinkSettings) -> str | None:
    return None if text is None else sink_error_text(text, sink.url, sink.secret)


def sink_states(db: Session, sinks: Mapping[str, SinkSettings]) -> list[SinkState]:
    """Each configured sink with its backlog in the outbox (every process's, from the database)."""
    out = []
    for health in outbox.sink_health(db, sinks):
        sink = sinks[health.sink]
        out.append(
            SinkState(
                name=health.sink,
                type=sink.type,
                enabled=sink.enabled,
                events=list(sink.events),
                destination=_destination(sink),
                include_probe=sink.include_probe,
                pending=health.pending,
                failing_since=health.failing_since,
                attempts=health.attempts,
                last_error=_without_secrets(health.last_error, sink),
                given_up=health.given_up,
            )
        )
    return out


@dataclass(frozen=True)
class AuditNote:
    """One audit entry, as the system page quotes it."""

    seq: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]


@dataclass(frozen=True)
class AuditChainState:
    entries: int
    head: AuditNote | None  # the newest entry
    last_verification: AuditNote | None  # the newest check of the whole chain (``details``: ok, entries)


def _note(entry: AuditEntry | None) -> AuditNote | None:
    if entry is None:
        return None
    return AuditNote(entry.seq, utc(entry.at), entry.actor, entry.action, entry.target, dict(entry.details or {}))


def _newest(db: Session, *where: Any) -> AuditNote | None:
    return _note(db.scalars(select(AuditEntry).where(*where).order_by(AuditEntry.seq.desc()).limit(1)).first())


def audit_chain_state(db: Session) -> AuditChainState:
    """The chain's size and head, and the last verification on record: checking the whole chain reads every entry,
    so the page shows the last check and offers a new one (``GET /api/audit/verify``, itself audited)."""
    entries = db.scalar(select(func.count()).select_from(AuditEntry)) or 0
    return AuditChainState(int(entries), _newest(db), _newest(db, AuditEntry.action == VERIFY_ACTION))


def last_retention_entry(db: Session) -> AuditNote | None:
    """Retention's newest audit entry, from any process: what it last destroyed, or an admin's run on demand. A
    round that found nothing due writes nothing, so this is not when retention last ran."""
    return _newest(db, AuditEntry.action.startswith(RETENTION_ACTIONS))
