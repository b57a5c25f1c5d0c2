"""The transactional outbox: an event for the sinks of a deployment is a row written in the transaction that commits
what it announces, so an event exists exactly when its cause does (a rolled-back alert or decision sends nothing;
a committed one is sent even if every process dies the next instant).

``enqueue(session, deployment_id, kind, payload, key=...)`` is the one way in: the alert's commit
(``openlfr.alerts.database``), a decision, verification or outcome (``openlfr.services.reviews``), a camera's change
of state. It writes one row per sink the deployment names whose ``events`` include the kind. The delivery workers
(``openlfr.alerts.delivery``) send the rows: ``claim`` leases the due ones, one sender per row across processes;
``finish`` records what the sink said. Rows go out in commit order per (sink, deployment): only the oldest row not
yet delivered of each is ever claimed.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from openlfr.alerts.footage import footage_facts
from openlfr.clock import utc_now
from openlfr.config_file import SinkEvent, SinkSettings
from openlfr.settings import Settings, get_settings
from openlfr.store.alert_models import Alert, Delivery
from openlfr.store.db import Store
from openlfr.store.governance_models import Deployment, SnapshotPerson
from openlfr.store.models import Person, Watchlist
from openlfr.urls import url_destination
from openlfr.watchlist.calibration import false_match_rate
from openlfr.watchlist.second_opinion import scored_by

log = logging.getLogger(__name__)

# Which of a sink's ``events`` an event kind belongs to.
EVENT_GROUPS: dict[str, SinkEvent] = {
    "alert": "alert",
    "decision": "decision",
    "verification": "decision",
    "outcome": "decision",
    "undo": "decision",
    "camera": "camera",
}
RETRY_FIRST_S = 1.0


ADHOC = ("webhook", "mqtt")


def adhoc_name(kind: str, address: str) -> str:
    """The name of a sink given by its address (``openlfr scan --webhook URL`` / ``--mqtt ADDRESS``): where it
    leads (scheme, host, port) and a digest of the whole, so that a later scan naming the same address finds what
    an earlier one left pending, and no token in a URL (its credentials, query or path) is ever stored, logged or
    audited."""
    digest = hashlib.sha256(address.encode()).hexdigest()[:12]
    return f"{kind}:{url_destination(address)[:160]}#{digest}"  # within the column's 200 characters, whatever the URL


def adhoc_sink(kind: str, address: str) -> SinkSettings:
    """Alerts only, unsigned: a one-shot scan has no configured secret."""
    return SinkSettings(type=kind, url=address, events=["alert"])  # type: ignore[arg-type]


def _subscribes(name: str, group: SinkEvent, configured: Mapping[str, SinkSettings]) -> bool | None:
    """Whether sink ``name`` hears of ``group`` events; None for a sink nobody configured."""
    config = configured.get(name)
    if config is not None:
        return config.enabled and group in config.events
    if name.partition(":")[0] in ADHOC:
        return group == "alert"
    return None


def enqueue(
    session: Session,
    deployment_id: int | None,
    kind: str,
    payload: Mapping[str, Any],
    *,
    key: str,
    expires_at: datetime | None = None,
    sinks: Mapping[str, SinkSettings] | None = None,
) -> int:
    """An event for the sinks of deployment ``deployment_id``, in ``session``'s transaction: one row for each sink
    the deployment names that subscribes to ``kind`` (``alert``, ``decision``, ``verification``, ``outcome``,
    ``camera``); how many rows. ``key`` is the event's stable key (the receiver's ``Idempotency-Key``): an event
    enqueued twice under one key is sent once. Not sent after ``expires_at`` (default: the probe retention)."""
    if deployment_id is None:
        return 0
    names = session.scalar(sa.select(Deployment.sinks).where(Deployment.id == deployment_id)) or []
    if not names:
        return 0
    settings = get_settings()
    configured = settings.sinks if sinks is None else sinks
    now = utc_now()
    expires = expires_at or now + timedelta(seconds=settings.probe_retention_seconds)
    group = EVENT_GROUPS[kind]
    rows = []
    for name in names:
        subscribes = _subscribes(name, group, configured)
        if subscribes is None:
            log.error(
                "deployment %d names sink %r, which is not configured: its %s event is not sent",
                deployment_id,
                name,
                kind,
            )
        if not subscribes:
            continue
        body = {"event": kind, "key": key, "deployment_id": deployment_id, **payload}
        rows.append(
            {
                "sink": name,
                "key": key,
                "kind": kind,
                "deployment_id": deployment_id,
                "payload": body,
                "created_at": now,
                "expires_at": expires,
                "due_at": now,
                "attempts": 0,
            }
        )
    if rows:
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        session.execute(dialect.insert(Delivery).values(rows).on_conflict_do_nothing(index_elements=["sink", "key"]))
    return len(rows)


def alert_payload(session: Session, alert: Alert) -> dict[str, Any]:
    """What a sink hears of an alert: who, where, how sure, when, and the console's link. No image and no
    embedding: the probe crop is never stored here (a sink whose admin opted in gets it added as it is sent, from
    the alert's row, so retention's purge of the probe reaches it: ``probe_of``)."""
    settings = get_settings()
    deployment = session.get(Deployment, alert.deployment_id) if alert.deployment_id is not None else None
    fmr = _false_match_rate(settings, scored_by(alert.model_id, alert.evidence), alert.score)
    base = settings.server_public_url.rstrip("/") or f"http://{settings.server_host}:{settings.server_port}"
    body: dict[str, Any] = {
        "alert_id": alert.id,
        "deployment": None if deployment is None else deployment.name,
        "camera": alert.camera,
        "person": {
            "reference_id": alert.person_ref,
            "name": alert.person_name,
            "category": _category(session, alert),
        },
        "score": round(alert.score, 4),
        "threshold": round(alert.threshold, 4),
        "false_match_rate": fmr,
        "seen_at": alert.seen_at.isoformat(),
        "committed_at": alert.created_at.isoformat(),
        # A retrospective search's sighting is recorded footage: where in the file, and when in the footage.
        **footage_facts(deployment, alert),
        "url": f"{base}/alerts/{alert.id}",
    }
    return body


def enqueue_alert(session: Session, alert: Alert) -> int:
    """The alert's event, in the alert's own transaction; sent until its probe retention ends."""
    if not session.scalar(sa.select(Deployment.sinks).where(Deployment.id == alert.deployment_id)):
        return 0  # no sink: nothing more in the alert's transaction
    expires = alert.created_at + timedelta(seconds=get_settings().probe_retention_seconds)
    payload = alert_payload(session, alert)
    return enqueue(session, alert.deployment_id, "alert", payload, key=alert.uid, expires_at=expires)


def enqueue_review(session: Session, alert_id: int, kind: str, facts: Mapping[str, Any], round_: int = 0) -> int:
    """A decision, verification, outcome or undo on an alert, in the transaction that records it; its key is the
    alert's stable key and the step, so a receiver de-duplicates each step on its own. ``round_`` counts the steps
    undone before this one: a step taken again after an undo (or a second undo) is a new event, with a new key."""
    alert = session.get(Alert, alert_id)
    if alert is None:
        return 0
    expires = alert.created_at + timedelta(seconds=get_settings().probe_retention_seconds)
    payload = {"alert_id": alert.id, "alert_key": alert.uid, "camera": alert.camera, **facts}
    key = f"{alert.uid}:{kind}" + (f":{round_}" if round_ else "")
    return enqueue(session, alert.deployment_id, kind, payload, key=key, expires_at=expires)


def _category(session: Session, alert: Alert) -> str | None:
    if alert.deployment_id is not None:
        found = session.scalar(
            sa.select(SnapshotPerson.category).where(
                SnapshotPerson.deployment_id == alert.deployment_id, SnapshotPerson.person_ref == alert.person_ref
            )
        )
        if found is not None:
            return found
    return session.scalar(
        sa.select(Person.category)
        .join(Watchlist, Watchlist.id == Person.watchlist_id)
        .where(Watchlist.name == alert.watchlist_name, Person.reference_id == alert.person_ref)
    )


def _false_match_rate(settings: Settings, model_id: str, score: float) -> float | None:
    return false_match_rate(model_id, score, explicit=settings.calibration_file, data_dir=settings.data_dir)


# ----- the senders' side -----


@dataclass(frozen=True)
class Claimed:
    """A row leased to this sender: what to send, where."""

    id: int
    sink: str
    key: str
    kind: str
    deployment_id: int | None
    payload: dict[str, Any]
    attempts: int


def claim(store: Store, sink: str, owner: str, lease_s: float, limit: int = 20) -> list[Claimed]:
    """Lease the due rows of ``sink`` to ``owner`` for ``lease_s`` seconds: of each deployment only the oldest row
    not yet delivered (commit order), and only if nobody else holds it. One sender per row across processes: on
    PostgreSQL the rows are read ``FOR UPDATE SKIP LOCKED``, on SQLite under the database's write lock, taken first;
    on both, the lease is written only where no lease was taken meanwhile. Rows past their expiry are given up."""
    now = utc_now()
    with store.session() as session:
        postgres = session.get_bind().dialect.name == "postgresql"
        if not postgres:  # the write lock first: the read below then sees every other sender's lease
            session.execute(sa.update(Delivery).where(Delivery.id == -1).values(attempts=Delivery.attempts))
        pending = (Delivery.sink == sink, Delivery.delivered_at.is_(None), Delivery.given_up_at.is_(None))
        heads = sa.select(sa.func.min(Delivery.id)).where(*pending).group_by(Delivery.deployment_id)
        free = sa.or_(Delivery.lease_until.is_(None), Delivery.lease_until < now)
        query = (
            sa.select(Delivery)
            .where(Delivery.id.in_(heads), Delivery.due_at <= now, free)
            .order_by(Delivery.id)
            .limit(limit)
        )
        if postgres:
            query = query.with_for_update(skip_locked=True)
        claimed = []
        for row in session.scalars(query).all():
            if row.expires_at <= now:
                row.given_up_at, row.last_error = now, f"not delivered before it expired ({row.attempts} attempts)"
                log.error("sink %s: %s event %s given up: %s", sink, row.kind, row.key, row.last_error)
                continue
            leased = session.execute(
                sa.update(Delivery)
                .where(Delivery.id == row.id, free, Delivery.delivered_at.is_(None))
                .values(lease_by=owner, lease_until=now + timedelta(seconds=lease_s))
                .execution_options(synchronize_session=False)
            )
            if int(getattr(leased, "rowcount", 0) or 0) == 1:
                claimed.append(
                    Claimed(row.id, row.sink, row.key, row.kind, row.deployment_id, dict(row.payload), row.attempts)
                )
        return claimed


def finish(store: Store, row: Claimed, owner: str, error: str | None, retry_max_s: float) -> None:
    """Record an attempt: delivered (``error`` None), or due again after a backoff that doubles per attempt."""
    now = utc_now()
    attempts = row.attempts + 1
    values: dict[str, Any] = {"attempts": attempts, "lease_by": None, "lease_until": None}
    if error is None:
        values |= {"delivered_at": now, "last_error": None}
    else:
        delay = min(retry_max_s, RETRY_FIRST_S * 2 ** min(attempts - 1, 20))
        values |= {"due_at": now + timedelta(seconds=delay), "last_error": error[:2000]}
    with store.session() as session:
        session.execute(sa.update(Delivery).where(Delivery.id == row.id).values(values))


def with_probe(store: Store, row: Claimed) -> dict[str, Any]:
    """An alert's payload with its probe crop (base64 JPEG), for a sink whose admin opted in: read from the alert
    as it is now, so nothing once purged by retention is ever sent."""
    alert_id = row.payload.get("alert_id")
    if row.kind != "alert" or not isinstance(alert_id, int):
        return row.payload
    with store.session() as session:
        probe = session.scalar(sa.select(Alert.probe_jpeg).where(Alert.id == alert_id))
    if probe is None:
        return row.payload | {"probe_jpeg_base64": None}  # purged: said, not sent
    return row.payload | {"probe_jpeg_base64": base64.b64encode(probe).decode("ascii")}


def forget_expired(session: Session, moment: datetime) -> int:
    """Delete the rows past their expiry (delivered, given up, or for a sink no longer configured); how many."""
    deleted = session.execute(sa.delete(Delivery).where(Delivery.expires_at <= moment))
    return int(getattr(deleted, "rowcount", 0) or 0)


def pending_counts(store: Store, deployment_id: int | None = None) -> dict[str, int]:
    """Rows not yet delivered nor given up, by sink (of one deployment, when given)."""
    query = (
        sa.select(Delivery.sink, sa.func.count())
        .where(Delivery.delivered_at.is_(None), Delivery.given_up_at.is_(None))
        .group_by(Delivery.sink)
    )
    if deployment_id is not None:
        query = query.where(Delivery.deployment_id == deployment_id)
    with store.session() as session:
        return {sink: int(count) for sink, count in session.execute(query).all()}


@dataclass(frozen=True)
class SinkHealth:
    """What the console shows of a sink: rows waiting, and since when and why the oldest keeps failing."""

    sink: str
    pending: int
    failing_since: datetime | None  # the oldest pending row that has failed at least once: its commit time
    attempts: int
    last_error: str | None
    given_up: int


def sink_health(session: Session, names: Collection[str]) -> list[SinkHealth]:
    out = []
    for name in sorted(names):
        waiting = (Delivery.sink == name, Delivery.delivered_at.is_(None), Delivery.given_up_at.is_(None))
        pending = session.scalar(sa.select(sa.func.count()).where(*waiting)) or 0
        oldest = session.execute(
            sa.select(Delivery.created_at, Delivery.attempts, Delivery.last_error)
            .where(*waiting, Delivery.attempts > 0)
            .order_by(Delivery.id)
            .limit(1)
        ).first()
        given_up = session.scalar(
            sa.select(sa.func.count()).where(Delivery.sink == name, Delivery.given_up_at.is_not(None))
        )
        out.append(
            SinkHealth(
                name,
                int(pending),
                None if oldest is None else oldest[0],
                0 if oldest is None else int(oldest[1]),
                None if oldest is None else oldest[2],
                int(given_up or 0),
            )
        )
    return out
