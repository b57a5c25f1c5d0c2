"""The audit log in the database: append an entry (under a lock on the head row) and verify the chain."""

from __future__ import annotations

import json
import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

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
