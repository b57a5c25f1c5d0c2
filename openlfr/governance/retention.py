"""Retention: what must be destroyed, and when. Pure decisions; ``openlfr.services.retention`` carries them out.

- A deployment's watchlist snapshot (images and embeddings) is destroyed ``snapshot_ttl`` after the
  deployment stopped being able to match (ended, cancelled or its window closed); default 24 hours.
- An alert's probe image is destroyed ``probe_ttl`` after the alert; default 31 days — unless an authoriser
  marked the alert for an investigation.
- A watchlist entry (the person, their photos and embeddings) is removed ``expired_entry_ttl`` after it expired;
  default 7 days, time enough to renew a listing that lapsed by oversight. Expired entries are never searched.
- Counts, decisions and outcomes are never purged: they are the deployment's public record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from openlfr.clock import utc
from openlfr.governance.deployments import DeploymentFacts, effective_end

DEFAULT_SNAPSHOT_TTL = timedelta(hours=24)
DEFAULT_PROBE_TTL = timedelta(days=31)
DEFAULT_EXPIRED_ENTRY_TTL = timedelta(days=7)


@dataclass(frozen=True)
class RetentionPolicy:
    snapshot_ttl: timedelta = DEFAULT_SNAPSHOT_TTL
    probe_ttl: timedelta = DEFAULT_PROBE_TTL
    expired_entry_ttl: timedelta = DEFAULT_EXPIRED_ENTRY_TTL

    def __post_init__(self) -> None:
        if min(self.snapshot_ttl, self.probe_ttl, self.expired_entry_ttl) < timedelta(0):
            raise ValueError("retention periods cannot be negative")

    @classmethod
    def from_seconds(
        cls, snapshot_seconds: float, probe_seconds: float, expired_entry_seconds: float | None = None
    ) -> RetentionPolicy:
        entry_ttl = (
            DEFAULT_EXPIRED_ENTRY_TTL if expired_entry_seconds is None else timedelta(seconds=expired_entry_seconds)
        )
        return cls(timedelta(seconds=snapshot_seconds), timedelta(seconds=probe_seconds), entry_ttl)


def snapshot_destroy_at(deployment: DeploymentFacts, policy: RetentionPolicy) -> datetime | None:
    """When the deployment's snapshot must be gone; None while it has no end (a draft never gets a snapshot)."""
    stopped = effective_end(deployment)
    return None if stopped is None else stopped + policy.snapshot_ttl


def snapshot_due(deployment: DeploymentFacts, policy: RetentionPolicy, now: datetime) -> bool:
    if deployment.snapshot_destroyed_at is not None:
        return False
    due = snapshot_destroy_at(deployment, policy)
    return due is not None and utc(now) >= due


def probe_destroy_at(alert_at: datetime, policy: RetentionPolicy) -> datetime:
    return utc(alert_at) + policy.probe_ttl


def probe_due(alert_at: datetime, held_for_investigation: bool, policy: RetentionPolicy, now: datetime) -> bool:
    return not held_for_investigation and utc(now) >= probe_destroy_at(alert_at, policy)


def expired_entry_cutoff(policy: RetentionPolicy, now: datetime) -> datetime:
    """Watchlist entries that expired at or before this moment are due for removal."""
    return utc(now) - policy.expired_entry_ttl


def expired_entry_due(expires_at: datetime, policy: RetentionPolicy, now: datetime) -> bool:
    return utc(expires_at) <= expired_entry_cutoff(policy, now)
