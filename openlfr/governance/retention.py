"""Retention: what must be destroyed, and when. Pure decisions; ``openlfr.api.retention`` carries them out.

- A deployment's watchlist snapshot (images and embeddings) is destroyed ``snapshot_ttl`` after the
  deployment stopped being able to match (ended, cancelled or its window closed); default 24 hours.
- An alert's probe image is destroyed ``probe_ttl`` after the alert; default 31 days — unless an authoriser
  marked the alert for an investigation.
- Counts, decisions and outcomes are never purged: they are the deployment's public record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from openlfr.governance.deployments import DeploymentFacts, effective_end, utc

DEFAULT_SNAPSHOT_TTL = timedelta(hours=24)
DEFAULT_PROBE_TTL = timedelta(days=31)


@dataclass(frozen=True)
class RetentionPolicy:
    snapshot_ttl: timedelta = DEFAULT_SNAPSHOT_TTL
    probe_ttl: timedelta = DEFAULT_PROBE_TTL

    def __post_init__(self) -> None:
        if self.snapshot_ttl < timedelta(0) or self.probe_ttl < timedelta(0):
            raise ValueError("retention periods cannot be negative")

    @classmethod
    def from_seconds(cls, snapshot_seconds: float, probe_seconds: float) -> RetentionPolicy:
        return cls(timedelta(seconds=snapshot_seconds), timedelta(seconds=probe_seconds))


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
