"""The one clock: aware UTC datetimes everywhere (the store keeps UTC; naive values read back are UTC)."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def utc(moment: datetime) -> datetime:
    """Aware UTC. Naive datetimes are taken to be UTC already (that is how the store keeps them)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
