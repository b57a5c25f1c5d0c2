"""`openlfr scan` in the governance record: every scan is a time-boxed, audited deployment of the local user.

A scan from the command line has no second person to authorise it, so it is recorded for what it is: a
deployment drafted and started by the local user (``cli:<login>``), with its sources, watchlist, threshold and
flags, a window from now to at most ``scan_max_hours`` ahead (matching stops at its end whatever happens), an
audit entry when it starts and one when it stops, its alerts bound to it for human review in the console,
and its counts (frames, faces seen, tracks, alerts) on the record. The server never runs it: ``may_match``
refuses a deployment authorised by its own author, so a local scan is never mistaken for an authorised one.

``openlfr scan --deployment ID`` instead runs inside a deployment authorised in the server (another person's
authorisation, its watchlist snapshot and threshold), guarded by ``may_match``; see ``openlfr.stream.cli``.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from openlfr.governance.deployments import Status, now_utc
from openlfr.settings import Settings
from openlfr.store.db import Store
from openlfr.stream.source import CameraConfig
from openlfr.stream.stats import CameraCounters


def local_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"[:64]
    except (KeyError, OSError):
        return "cli:unknown"


@dataclass
class ScanDeployment:
    store: Store
    settings: Settings
    deployment_id: int
    actor: str
    ends_at: datetime

    @classmethod
    def start(
        cls,
        store: Store,
        settings: Settings,
        cameras: list[CameraConfig],
        watchlist: str,
        threshold: float,
        target_fpir: float | None,
        threshold_note: str,
        flags: dict[str, Any],
        watchlist_size: int,
    ) -> ScanDeployment:
        from openlfr.api.audit_log import audit_key, record
        from openlfr.store.governance_models import Deployment

        actor = local_actor()
        starts = now_utc()
        ends = starts + timedelta(hours=settings.scan_max_hours)
        with store.session() as db:
            row = Deployment(
                name=f"scan by {actor}",
                place="local scan (" + ", ".join(c.name for c in cameras) + ")",
                purpose="openlfr scan from the command line",
                starts_at=starts,
                ends_at=ends,
                cameras=[{"name": c.name, "source": c.url} for c in cameras],
                watchlist_name=watchlist,
                threshold=None if target_fpir is not None else threshold,
                target_fpir=target_fpir,
                status=Status.AUTHORISED.value,
                created_by=actor,
                created_at=starts,
                authorised_by=actor,
                authorised_at=starts,
                justification="local command-line scan (self-authorised, recorded): " + describe(flags),
                effective_threshold=threshold,
                threshold_note=threshold_note,
                watchlist_size=watchlist_size,
                frames=0,
                faces_seen=0,
                tracks=0,
                alerts_raised=0,
            )
            db.add(row)
            db.flush()
            record(
                db,
                audit_key(settings),
                actor,
                "cli",
                "scan.start",
                f"deployment:{row.id}",
                {"cameras": row.cameras, "watchlist": watchlist, "threshold": threshold, "flags": flags},
            )
            deployment_id = row.id
        return cls(store, settings, deployment_id, actor, ends)

    def finish(self, counters: CameraCounters, errors: dict[str, str], interrupted: bool) -> None:
        """Counts onto the record, the deployment ended, and an audit entry saying how it went."""
        from openlfr.api import services
        from openlfr.api.audit_log import audit_key, record
        from openlfr.store.governance_models import Deployment

        with self.store.session() as db:
            services.add_counts(
                db, self.deployment_id, counters.decoded, counters.faces_seen, counters.tracks, counters.alerts
            )
            row = db.get(Deployment, self.deployment_id)
            if row is not None and row.status == Status.AUTHORISED.value:
                row.status = Status.ENDED.value
                row.ended_by = self.actor
                row.ended_at = min(now_utc(), self.ends_at)
                if errors:
                    row.pipeline_note = "; ".join(errors.values())[:2000]
            record(
                db,
                audit_key(self.settings),
                self.actor,
                "cli",
                "scan.end",
                f"deployment:{self.deployment_id}",
                {
                    "frames": counters.decoded,
                    "faces_seen": counters.faces_seen,
                    "tracks": counters.tracks,
                    "alerts": counters.alerts,
                    "camera_errors": len(errors),
                    "interrupted": interrupted,
                },
            )


def describe(flags: dict[str, Any]) -> str:
    return " ".join(f"--{k.replace('_', '-')}={v}" for k, v in flags.items() if v not in (None, False, [], ""))
