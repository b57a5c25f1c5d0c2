"""What the console's event streams show, computed once per server process and fanned out to every open stream.

An open stream holds no database connection: it waits on the :class:`EventBoard`, which recomputes the queue's
signature in one short session whenever a change is announced (``openlfr.store.changes``: a ``NOTIFY`` from any
process or server replica on PostgreSQL, a commit in this process on SQLite) and on a cheap poll besides (other
processes writing to SQLite, a deployment window opening or closing with no write at all). One listening
connection per process on PostgreSQL, none per stream.

The board also announces each camera's change of state (``openlfr.runtime.camera_health``), whichever process
runs the camera: as a typed :class:`~openlfr.runtime.camera_health.CameraStateChanged` to whoever subscribed
(``subscribe_camera_states``), and to the console's streams as a ``cameras`` event (tiles and banners).

It is also the one committed-alert event of the process (``subscribe_alerts``): each alert of a deployment committed
to the database, by this process or any other, is told once, as a :class:`CommittedAlert`, to delivery, the camera
tiles and the metrics; nothing else tells them of alerts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from openlfr.runtime.camera_health import CameraHealth, CameraStateChanged, CameraStatus, live_cameras
from openlfr.services.accounts import ACCOUNT_TABLES
from openlfr.store import Store, changes
from openlfr.store.alert_models import Alert
from openlfr.store.governance_models import AlertReview, Deployment

log = logging.getLogger(__name__)

SQLITE_POLL_S = 0.5  # other processes' writes to SQLite are seen this late at most
POSTGRES_POLL_S = 2.0  # NOTIFY announces writes; the poll catches deployment windows that open or close
LISTEN_RETRY_S = 1.0  # a lost PostgreSQL listening connection is reopened this often
# Commits can land out of id order (two writers on PostgreSQL): alerts this many ids below the newest announced are
# still looked for, and each is announced once.
ALERT_LOOKBACK = 64


@dataclass(frozen=True)
class CommittedAlert:
    """What subscribers to the committed-alert event learn of an alert (no image, no score, no name)."""

    id: int
    deployment_id: int
    camera: str
    track_id: int
    person_ref: str
    latency_ms: float | None  # from the deciding frame's arrival to the commit


def committed_alerts(db: Session, above: int) -> list[CommittedAlert]:
    """The alerts of deployments with an id above ``above``, in id order."""
    rows = db.execute(
        select(
            Alert.id,
            Alert.deployment_id,
            Alert.camera,
            Alert.track_id,
            Alert.person_ref,
            Alert.latency_ms,
            Alert.seen_at,
            Alert.created_at,
        )
        .where(Alert.deployment_id.is_not(None), Alert.id > above)
        .order_by(Alert.id)
    ).all()
    # The writer stores its own latency just after the commit; until then its commit stamp says nearly the same.
    return [
        CommittedAlert(
            r.id,
            r.deployment_id,
            r.camera,
            r.track_id,
            r.person_ref,
            r.latency_ms if r.latency_ms is not None else (r.created_at - r.seen_at).total_seconds() * 1000.0,
        )
        for r in rows
    ]


def queue_signature(db: Session) -> dict[str, Any]:
    """What changes when the queue changes: a new alert, or a decision, check or outcome on one; which
    deployments are live, and the state of each of their cameras."""
    alerts = db.execute(
        select(func.count(), func.max(Alert.id)).select_from(Alert).where(Alert.deployment_id.is_not(None))
    ).one()
    reviews = db.execute(
        select(func.count(AlertReview.decision), func.count(AlertReview.verified_by), func.count(AlertReview.outcome))
    ).one()
    # The console's tab title counts these on every page (issue 20): alerts nobody has decided on yet.
    undecided = db.scalar(
        select(func.count())
        .select_from(Alert)
        .outerjoin(AlertReview, AlertReview.alert_id == Alert.id)
        .where(Alert.deployment_id.is_not(None), AlertReview.decision.is_(None))
    )
    live = live_cameras(db)
    # Retrospective searches being processed, with their seconds of footage analysed: their pages' progress bars
    # follow this (a search leaving the list has finished, or its run stopped).
    searching = db.execute(
        select(Deployment.id, Deployment.media_done_seconds).where(
            Deployment.processing_started_at.is_not(None), Deployment.processing_finished_at.is_(None)
        )
    ).all()
    return {
        "alerts": alerts[0],
        "latest": alerts[1],
        "undecided": undecided or 0,
        "decided": reviews[0],
        "verified": reviews[1],
        "outcomes": reviews[2],
        "live": sorted(group.deployment_id for group in live),
        "searches": sorted([row.id, round(float(row.media_done_seconds or 0.0), 2)] for row in searching),
        "cameras": sorted(
            [group.deployment_id, name, health.state.value, health.since.isoformat(), health.reason]
            for group in live
            for name, health in group.states.items()
        ),
    }


def camera_changes(before: dict[str, Any] | None, after: dict[str, Any]) -> list[CameraStateChanged]:
    """The cameras whose state differs between two signatures (a camera new to the board counts as changed)."""
    old = {(row[0], row[1]): CameraStatus(row[2]) for row in (before or {}).get("cameras", [])}
    changed = []
    for deployment_id, camera, state, since, reason in after.get("cameras", []):
        status = CameraStatus(state)
        previous = old.get((deployment_id, camera))
        if previous is not status:
            health = CameraHealth(status, datetime.fromisoformat(since), reason)
            changed.append(CameraStateChanged(deployment_id, camera, health, previous))
    return changed


@dataclass(frozen=True)
class BoardState:
    """One version of what the streams show. ``accounts`` counts announced changes to accounts and sessions:
    a stream re-checks its login when it moves."""

    version: int
    signature: dict[str, Any] | None
    accounts: int


class EventBoard:
    """The current signature and a version; streams await the next version. Start once the event loop runs."""

    def __init__(
        self, store: Store, poll_s: float | None = None, on_accounts: Callable[[], None] = lambda: None
    ) -> None:
        self.store = store
        self._on_accounts = on_accounts  # told at once of every announced change to accounts or sessions
        self.postgres = store.engine.dialect.name == "postgresql"
        self.poll_s = poll_s if poll_s is not None else (POSTGRES_POLL_S if self.postgres else SQLITE_POLL_S)
        self.state = BoardState(0, None, 0)  # what streams see; replaced on the event loop's thread
        self._latest = self.state  # what the refresh thread last published
        self.refreshes = 0  # how many times the signature was read from the database (a figure for benchmarks)
        self._due = threading.Event()
        self._accounts_due = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._moved: asyncio.Event | None = None
        self._unsubscribe: Any = None
        self._camera_subscribers: list[Callable[[CameraStateChanged], None]] = []
        self._alert_subscribers: list[Callable[[CommittedAlert], None]] = []
        self._alerts_from: int | None = None  # alerts up to this id were there before the board, or announced
        self._alerts_told: set[int] = set()  # ids above it already announced (out-of-order commits)

    # ----- life -----

    def start(self) -> None:
        """Start following the database, on the running event loop (the server's lifespan, or the first stream
        of an app run without one: the board then stops with that loop)."""
        if self._loop is not None and not self._loop.is_closed() and not self._stop.is_set():
            return
        self._stop.clear()
        self._loop = asyncio.get_running_loop()
        self._moved = asyncio.Event()
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._unsubscribe = changes.subscribe(self.store.engine, self._announced)
        self._due.set()
        self._threads = [threading.Thread(target=self._refresh_loop, name="openlfr-event-board", daemon=True)]
        if self.postgres:
            self._threads.append(threading.Thread(target=self._listen_loop, name="openlfr-listen", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._due.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
        for thread in self._threads:
            thread.join(timeout=5)

    # ----- what streams call -----

    async def next_state(self, after: int, timeout: float) -> BoardState:
        """The state once its version passes ``after``, or the current one after ``timeout`` seconds."""
        self.start()
        while self.state.version <= after and self._moved is not None:
            moved = self._moved
            try:
                await asyncio.wait_for(moved.wait(), timeout)
            except TimeoutError:
                break
        return self.state

    def subscribe_camera_states(self, callback: Callable[[CameraStateChanged], None]) -> Callable[[], None]:
        """Call ``callback`` (on the board's thread) with each camera's change of state; returns the unsubscribe."""
        self._camera_subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._camera_subscribers:
                self._camera_subscribers.remove(callback)

        return unsubscribe

    def subscribe_alerts(self, callback: Callable[[CommittedAlert], None]) -> Callable[[], None]:
        """The committed-alert event: ``callback(alert)`` (on the board's thread, returning at once) once for each
        alert of a deployment committed after the board's first reading, by this process or, through ``NOTIFY``,
        any other; returns the unsubscribe. Delivery, the camera tiles and the metrics follow it."""
        self._alert_subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._alert_subscribers:
                self._alert_subscribers.remove(callback)

        return unsubscribe

    def poke(self) -> None:
        """Recompute now (a change this process knows of)."""
        self._due.set()

    # ----- inside -----

    def _running(self) -> bool:
        return not self._stop.is_set() and self._loop is not None and not self._loop.is_closed()

    def _announced(self, tables: frozenset[str]) -> None:
        if tables & ACCOUNT_TABLES:
            self._on_accounts()
            self._accounts_due.set()
        self._due.set()

    def _refresh_loop(self) -> None:
        while not self._stop.is_set():
            self._due.wait(self.poll_s)
            self._due.clear()
            if not self._running():
                return
            accounts_moved = self._accounts_due.is_set()
            self._accounts_due.clear()
            try:
                with Session(self.store.engine) as db:
                    signature = queue_signature(db)
                    alerts = self._new_alerts(db, self._latest.signature, signature)
                self.refreshes += 1
            except Exception as exc:  # the database away: keep the last state, try again at the next poll
                log.warning("the console's event board cannot read the database: %s", exc)
                continue
            old = self._latest
            if signature != old.signature or accounts_moved:
                self._latest = BoardState(old.version + 1, signature, old.accounts + int(accounts_moved))
                self._publish(self._latest)
                self._announce_cameras(camera_changes(old.signature, signature))
            self._announce_alerts(alerts)

    def _announce_cameras(self, changes: list[CameraStateChanged]) -> None:
        for change in changes:
            for callback in list(self._camera_subscribers):
                try:
                    callback(change)
                except Exception:  # one subscriber's bug must not keep the others, or the board, from going on
                    log.exception("a subscriber to camera states failed")

    def _new_alerts(self, db: Session, before: dict[str, Any] | None, after: dict[str, Any]) -> list[CommittedAlert]:
        """The alerts committed since the last reading, each once (read only when the count or the newest moved)."""
        if self._alerts_from is None:  # the first reading is what was there before, not news
            self._alerts_from = int(after["latest"] or 0)
            return []
        if before is not None and (before["alerts"], before["latest"]) == (after["alerts"], after["latest"]):
            return []
        newest = max([self._alerts_from, *self._alerts_told])
        floor = max(self._alerts_from, newest - ALERT_LOOKBACK)
        found = [alert for alert in committed_alerts(db, floor) if alert.id not in self._alerts_told]
        self._alerts_told = {i for i in self._alerts_told if i > floor} | {alert.id for alert in found}
        return found

    def _announce_alerts(self, alerts: list[CommittedAlert]) -> None:
        for alert in alerts:
            for callback in list(self._alert_subscribers):
                try:
                    callback(alert)
                except Exception:
                    log.exception("a subscriber to committed alerts failed")

    def _publish(self, state: BoardState) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def wake() -> None:
            self.state = state
            moved, self._moved = self._moved, asyncio.Event()
            if moved is not None:
                moved.set()

        with contextlib.suppress(RuntimeError):  # the loop closed while the server stops
            loop.call_soon_threadsafe(wake)

    def _listen_loop(self) -> None:
        """One PostgreSQL connection, outside the pool, that LISTENs; reopened when the database comes back."""
        import psycopg

        url = self.store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while self._running():
            try:
                with psycopg.connect(url, autocommit=True, connect_timeout=5) as connection:
                    connection.execute(f"LISTEN {changes.CHANNEL}")
                    self._due.set()  # anything missed while not listening
                    while self._running():
                        for notice in connection.notifies(timeout=1.0):
                            self._announced(changes.changed_tables(notice.payload))
            except Exception as exc:
                if not self._running():
                    return
                log.warning("listening for PostgreSQL notifications failed (%s); retrying", exc)
                self._stop.wait(LISTEN_RETRY_S)
