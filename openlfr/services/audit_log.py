"""The audit log in the database: append an entry (under a lock on the head row), verify the chain, and read it
back filtered (the console's pages, the API's list and the export)."""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Select, func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from openlfr.clock import utc, utc_now
from openlfr.errors import OpenLFRError
from openlfr.governance.audit import (
    GENESIS,
    AuditVerdict,
    canonical,
    chain_time,
    entry_hash,
    verify_anchor,
    verify_chain,
)
from openlfr.governance.records import spreadsheet_safe
from openlfr.settings import Settings
from openlfr.store.governance_models import AuditEntry, AuditHead

KEY_FILE = "audit.key"


def audit_key(settings: Settings) -> bytes:
    """The chain's HMAC key: from settings, else a key file created once (mode 0600) in the data directory."""
    if settings.audit_key:
        return settings.audit_key.encode()
    path = Path(settings.data_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
    key = path.read_text().strip()
    if len(key) < 32:
        raise OpenLFRError(f"{path}: the audit key is damaged (too short); restore it from backup")
    return key.encode()


def ensure_head(session: Session) -> None:
    if session.get(AuditHead, 1) is None:
        session.add(AuditHead(id=1, seq=0, hash=GENESIS))
        session.flush()


def record(
    session: Session,
    key: bytes,
    actor: str,
    role: str,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> AuditEntry:
    """Append an entry in the caller's transaction: it commits (or rolls back) with the action it records.

    Incrementing the head row first takes its write lock (a row lock on PostgreSQL, the database lock on
    SQLite), so concurrent appends queue up instead of forking the chain, and each is dated, under that lock, no
    earlier than the entry before it (``chain_time``); ``now`` (default: the clock) is kept as ``clock_at``.
    """
    ensure_head(session)
    seq, prev = session.execute(
        update(AuditHead)
        .where(AuditHead.id == 1)
        .values(seq=AuditHead.seq + 1)
        .returning(AuditHead.seq, AuditHead.hash)
    ).one()
    clock = utc(now or utc_now())
    at = chain_time(clock, session.scalar(select(AuditEntry.at).where(AuditEntry.seq == seq - 1)))
    # Hash exactly what the database will hand back: JSON primitives only.
    clean = json.loads(json.dumps(details or {}, default=str))
    digest = entry_hash(key, canonical(seq, at, actor, role, action, target, clean, prev, clock))
    entry = AuditEntry(
        seq=seq,
        at=at,
        clock_at=clock,
        actor=actor,
        role=role,
        action=action,
        target=target,
        details=clean,
        prev_hash=prev,
        hash=digest,
    )
    session.add(entry)
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(hash=digest))
    session.flush()
    return entry


def verify(session: Session, key: bytes, anchor: tuple[int, str] | None = None) -> AuditVerdict:
    """The chain and head checked; then, if given, that the anchored entry (``SEQ``, ``HASH``) is still there."""
    entries = session.scalars(select(AuditEntry).order_by(AuditEntry.seq, AuditEntry.id)).all()
    head = session.get(AuditHead, 1)
    verdict = verify_chain(entries, key, None if head is None else (head.seq, head.hash))
    if not verdict.ok or anchor is None:
        return verdict
    return verify_anchor(entries, anchor)


def current_anchor(session: Session) -> tuple[int, str] | None:
    """The head as an anchor (last sequence number and hash), or None while the log is empty."""
    head = session.get(AuditHead, 1)
    return None if head is None or head.seq == 0 else (head.seq, head.hash)


def anchor_as_of(session: Session, moment: datetime, written_after: int | None = None) -> tuple[int, str] | None:
    """The head as it stood at ``moment``: the last entry written then or before, or None if there was none yet.

    Entries are numbered in the order they are written, under the head's lock, and stamped as they are: the
    last number stamped at or before ``moment`` was the head then (and an anchor covers every entry before it).
    ``written_after``: the number of an entry known to be written after ``moment``; the search starts there
    instead of at the head (``at`` has no index: from the head it reads every entry since)."""
    query = select(AuditEntry.seq, AuditEntry.hash).where(AuditEntry.at <= moment)
    if written_after is not None:
        query = query.where(AuditEntry.seq < written_after)
    row = session.execute(query.order_by(AuditEntry.seq.desc()).limit(1)).first()
    return None if row is None else (int(row[0]), str(row[1]))


def anchor_text(anchor: tuple[int, str]) -> str:
    """``SEQ:HASH``, as ``openlfr audit anchor`` prints it and ``audit verify --anchor`` reads it."""
    return f"{anchor[0]}:{anchor[1]}"


@dataclass(frozen=True)
class AuditFilter:
    """Which entries a reader asks for. ``actor``, ``action`` and ``target`` match exactly, or, ending in ``*``,
    as a prefix (``deployment.*``, ``deployment:*``); ``since`` and ``until`` bound the entry's time, both
    included. Empty: no condition."""

    actor: str = ""
    action: str = ""
    target: str = ""
    since: datetime | None = None
    until: datetime | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        found = [
            _matches(column, value)
            for column, value in ((AuditEntry.actor, self.actor), (AuditEntry.action, self.action))
            if value
        ]
        if self.target:
            found.append(_matches(AuditEntry.target, self.target))
        if self.since is not None:
            found.append(AuditEntry.at >= utc(self.since))
        if self.until is not None:
            found.append(AuditEntry.at <= utc(self.until))
        return found

    def as_dict(self) -> dict[str, str]:
        """The conditions that are set, as text (for an audit entry, or a page's links)."""
        times = {"from": self.since, "to": self.until}
        found = {"actor": self.actor, "action": self.action, "target": self.target}
        found.update({name: utc(value).isoformat() for name, value in times.items() if value is not None})
        return {name: value for name, value in found.items() if value}


def _matches(column: InstrumentedAttribute[str], value: str) -> ColumnElement[bool]:
    if value.endswith("*"):
        return column.startswith(value.rstrip("*"), autoescape=True)
    return column == value


def entries_query(where: AuditFilter) -> Select[AuditEntry]:
    """The entries ``where`` asks for, unordered. The conditions are checked as the entries are read in order of
    ``seq`` (its unique index): a page stops at its last row; only the count reads every matching entry."""
    return select(AuditEntry).where(*where.conditions())


@dataclass(frozen=True)
class Export:
    """An export as it was started: the entries up to ``upto`` (the head then) that the filter matched."""

    where: AuditFilter
    upto: int
    entries: int
    format: str


EXPORT_FORMATS = ("csv", "jsonl")
EXPORT_COLUMNS = ("seq", "at", "clock_at", "actor", "role", "action", "target", "details", "prev_hash", "hash")
EXPORT_BATCH = 500  # entries read per short session while the export is streamed


class Auditor(Protocol):
    """Who acts, as ``services.context.Context`` says it (which writes its entries through this module)."""

    def audit(self, db: Session, action: str, target: str, details: dict[str, Any] | None = None) -> None: ...


def start_export(db: Session, ctx: Auditor, where: AuditFilter, format: str) -> Export:
    """Count what an export will hold and audit it (``export.audit``, with the filter and the count), in the
    caller's transaction. The export holds the entries up to the head as it is now: it streams afterwards and
    must hold exactly what was audited, whatever is written meanwhile (entries never change once written)."""
    head = db.get(AuditHead, 1)
    upto = 0 if head is None else head.seq
    entries = int(
        db.scalar(select(func.count()).where(*where.conditions(), AuditEntry.seq <= upto).select_from(AuditEntry)) or 0
    )
    details = {"format": format, "filters": where.as_dict(), "entries": entries, "upto": upto}
    ctx.audit(db, "export.audit", "audit_log", details)
    return Export(where, upto, entries, format)


def exported_entries(sessions: sessionmaker[Session], export: Export) -> Iterator[AuditEntry]:
    """The export's entries, oldest first, read in batches each in a short session of its own: a slow download
    holds no database connection between batches, and a long log is never in memory at once."""
    after = 0
    while True:
        with sessions() as db:
            batch = db.scalars(
                entries_query(export.where)
                .where(AuditEntry.seq > after, AuditEntry.seq <= export.upto)
                .order_by(AuditEntry.seq)
                .limit(EXPORT_BATCH)
            ).all()
        if not batch:
            return
        yield from batch
        after = batch[-1].seq


def _exported(entry: AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": utc(entry.at).isoformat(),
        "clock_at": None if entry.clock_at is None else utc(entry.clock_at).isoformat(),
        "actor": entry.actor,
        "role": entry.role,
        "action": entry.action,
        "target": entry.target,
        "details": entry.details,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def export_lines(sessions: sessionmaker[Session], export: Export) -> Iterator[str]:
    """The export as text, a line (a CSV row, or a JSON object) at a time. In CSV the details are one cell of
    JSON, and a cell a spreadsheet would run as a formula (starting with = + - @) is quoted (CSV injection)."""
    if export.format == "jsonl":
        for entry in exported_entries(sessions, export):
            yield json.dumps(_exported(entry), ensure_ascii=False, sort_keys=False) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def row(cells: list[Any]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(cells)
        return buffer.getvalue()

    yield row(list(EXPORT_COLUMNS))
    for entry in exported_entries(sessions, export):
        fields = _exported(entry)
        fields["details"] = json.dumps(fields["details"], ensure_ascii=False, sort_keys=True)
        yield row([spreadsheet_safe("" if fields[c] is None else fields[c]) for c in EXPORT_COLUMNS])


def readable_details(details: Any, prefix: str = "") -> list[tuple[str, str]]:
    """An entry's details as (key, value) lines a person reads: nested keys joined with dots
    (``filters.actor``), lists of plain values joined with commas, lists of objects numbered
    (``candidates.1.score``), nothing as "none"."""
    if isinstance(details, dict):
        if not details:
            return [(prefix, "(none)")] if prefix else []
        lines: list[tuple[str, str]] = []
        for key, value in details.items():
            lines.extend(readable_details(value, f"{prefix}.{key}" if prefix else str(key)))
        return lines
    if isinstance(details, list):
        if all(not isinstance(item, dict | list) for item in details):
            return [(prefix, ", ".join(_plain(item) for item in details) or "(none)")]
        lines = []
        for number, item in enumerate(details, start=1):
            lines.extend(readable_details(item, f"{prefix}.{number}" if prefix else str(number)))
        return lines
    return [(prefix, _plain(details))]


def _plain(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
