"""The audit log's hash chain: how an entry is hashed, and how a chain is checked.

Each entry carries a sequence number and the hash of the entry before it; its own hash is an HMAC-SHA256
(keyed with the server's audit key, which lives outside the database) over a canonical JSON of its fields and
that previous hash. So an entry edited, removed or inserted directly in the database breaks the chain at that
point, and without the key nobody can re-hash the chain to hide it. The store also keeps a *head* (last
sequence number and hash), which catches entries removed from the end.

Someone who can write the database could still cut entries off the end *and* set the head back to match. An
*anchor* closes that gap: ``openlfr audit anchor`` prints the head as ``SEQ:HASH`` for keeping outside the
database (a published record, a ticket, an e-mail); ``verify_anchor`` later checks that the chain still holds
that very entry.

Time runs forward along the chain: an entry is dated no earlier than the one before it (the later of the
clock's reading and its predecessor's date, so a clock set back cannot make the log tell events out of order),
and keeps the clock's own reading (``clock_at``) under its hash. Entries written before that reading was kept
have none, and are hashed without it, so their chains still verify.

``verify_chain`` walks the entries in sequence order and names the first one that is not what was written:
``altered`` (an entry's content changed), ``removed`` (one or more entries are missing), ``inserted``
(an entry that was never written by the application) or ``backdated`` (dated before its predecessor, which
the application never writes).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from openlfr.clock import utc

GENESIS = "0" * 64


class EntryFacts(Protocol):
    seq: int
    at: datetime
    actor: str
    role: str
    action: str
    target: str
    details: dict[str, Any]
    prev_hash: str
    hash: str
    clock_at: datetime | None


def chain_time(clock: datetime, previous: datetime | None) -> datetime:
    """An entry's date: the clock's reading, unless the entry before it is dated later (the clock was set back)."""
    return clock if previous is None or utc(clock) >= utc(previous) else previous


def canonical(
    seq: int,
    at: datetime,
    actor: str,
    role: str,
    action: str,
    target: str,
    details: Mapping[str, Any],
    prev: str,
    clock_at: datetime | None = None,
) -> bytes:
    record = {
        "seq": seq,
        "at": utc(at).isoformat(timespec="microseconds"),
        "actor": actor,
        "role": role,
        "action": action,
        "target": target,
        "details": details,
        "prev": prev,
    }
    if clock_at is not None:  # entries written before the clock's reading was kept are hashed as they were
        record["clock"] = utc(clock_at).isoformat(timespec="microseconds")
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def entry_hash(key: bytes, payload: bytes) -> str:
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def hash_of(entry: EntryFacts, key: bytes, seq: int | None = None) -> str:
    """The hash ``entry`` should carry (at position ``seq`` if given, else its own)."""
    payload = canonical(
        entry.seq if seq is None else seq,
        entry.at,
        entry.actor,
        entry.role,
        entry.action,
        entry.target,
        dict(entry.details or {}),
        entry.prev_hash,
        entry.clock_at,
    )
    return entry_hash(key, payload)


def genuine(entry: EntryFacts, key: bytes, seq: int | None = None) -> bool:
    return hmac.compare_digest(hash_of(entry, key, seq), entry.hash)


@dataclass(frozen=True)
class AuditVerdict:
    ok: bool
    entries: int
    first_bad_seq: int | None = None
    problem: str | None = None  # "altered" | "removed" | "inserted" | "backdated"
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        """What ``audit verify --json`` prints and the API answers."""
        return {
            "ok": self.ok,
            "entries": self.entries,
            "first_bad_seq": self.first_bad_seq,
            "problem": self.problem,
            "message": self.message,
        }

    @property
    def message(self) -> str:
        if self.ok:
            return f"audit log intact: {self.entries} entries, chain and head verified"
        return f"audit log broken at entry {self.first_bad_seq}: {self.problem} ({self.detail})"


def verify_chain(entries: Sequence[EntryFacts], key: bytes, head: tuple[int, str] | None) -> AuditVerdict:
    """Check the chain in sequence order (``entries`` sorted by seq); ``head`` is the stored (seq, hash) or None."""
    prev_hash = GENESIS
    prev_at: datetime | None = None
    expected = 1
    head_seq = head[0] if head is not None else None
    for index, entry in enumerate(entries):
        intact = genuine(entry, key)
        if intact and entry.seq == expected and entry.prev_hash == prev_hash:
            if prev_at is not None and utc(entry.at) < prev_at:
                when, before = utc(entry.at).isoformat(), prev_at.isoformat()
                detail = f"dated {when}, before entry {entry.seq - 1} at {before}"
                return AuditVerdict(False, len(entries), entry.seq, "backdated", detail)
            prev_hash, prev_at, expected = entry.hash, utc(entry.at), expected + 1
            continue
        if head_seq is not None and entry.seq > head_seq:
            return AuditVerdict(False, len(entries), entry.seq, "inserted", "beyond the last entry the server wrote")
        if intact and entry.seq > expected:
            missing = f"{expected}" if entry.seq == expected + 1 else f"{expected}-{entry.seq - 1}"
            return AuditVerdict(False, len(entries), expected, "removed", f"entries {missing} are missing")
        following = entries[index + 1] if index + 1 < len(entries) else None
        # The genuine entry for this place sits one further on (renumbered or not): this one was slipped in.
        if following is not None and following.prev_hash == prev_hash and genuine(following, key, expected):
            return AuditVerdict(False, len(entries), entry.seq, "inserted", "not written by the server")
        if following is not None and following.prev_hash == prev_hash and genuine(following, key):
            return AuditVerdict(False, len(entries), entry.seq, "inserted", "not written by the server")
        if intact:
            return AuditVerdict(False, len(entries), entry.seq, "inserted", "a copy of an entry out of its place")
        if entry.seq == expected:
            return AuditVerdict(False, len(entries), entry.seq, "altered", "its content no longer matches its hash")
        return AuditVerdict(False, len(entries), entry.seq, "inserted", "not written by the server")
    if head is not None:
        last_seq, last_hash = head
        if last_seq >= expected:
            missing = f"{expected}" if last_seq == expected else f"{expected}-{last_seq}"
            return AuditVerdict(False, len(entries), expected, "removed", f"entries {missing} are missing from the end")
        if last_seq == expected - 1 and last_seq > 0 and last_hash != prev_hash:
            return AuditVerdict(False, len(entries), last_seq, "altered", "the last entry does not match the head")
    return AuditVerdict(True, len(entries))


def parse_anchor(text: str) -> tuple[int, str]:
    """``SEQ:HASH`` as printed by ``openlfr audit anchor``; ValueError with the reason otherwise."""
    seq_text, _, digest = text.strip().partition(":")
    if not seq_text.isdigit() or int(seq_text) < 1:
        raise ValueError(f"{text!r}: an anchor is SEQ:HASH with SEQ a positive entry number")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"{text!r}: an anchor is SEQ:HASH with HASH 64 lower-case hex digits")
    return int(seq_text), digest


def verify_anchor(entries: Sequence[EntryFacts], anchor: tuple[int, str]) -> AuditVerdict:
    """Whether the chain (already verified) still holds the anchored entry with the anchored hash."""
    seq, digest = anchor
    found = next((e for e in entries if e.seq == seq), None)
    if found is None:
        return AuditVerdict(False, len(entries), seq, "removed", "the anchored entry is gone: the log was cut back")
    if not hmac.compare_digest(found.hash, digest):
        return AuditVerdict(False, len(entries), seq, "altered", "the entry at the anchor is not the anchored one")
    return AuditVerdict(True, len(entries))
