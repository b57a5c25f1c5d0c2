"""From an alert the pipeline raised to an alert people hear about: commit first, then announce.

A live deployment cannot wait for the database: its dispatcher may *hold* alerts (``held_max``), keeping each in
memory, in order, until the database has taken it, and retrying with backoff while the database does not answer
(a locked SQLite file, a PostgreSQL restart). Nothing is dropped silently: when the hold is full a new alert is
refused with an error in the log and counted (``lost``), and whoever runs the dispatcher shows the count.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from openlfr.alerts.database import AlertDatabase, ListingEnded
from openlfr.alerts.record import AlertFound, AlertRecord
from openlfr.alerts.sinks import AlertSink
from openlfr.store.db import UNAVAILABLE
from openlfr.text import first_line

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.5  # the first retry of a write the database did not take; doubled up to RETRY_MAX_S
RETRY_MAX_S = 5.0
OTHER_ATTEMPTS = 5  # any other error is a bug or bad data: retried this often, then refused loudly


@dataclass(frozen=True)
class HoldStatus:
    """What the dispatcher holds: alerts waiting for the database, and since when the database has not answered."""

    held: int
    written: int
    lost: int
    failing_since: float | None  # epoch seconds of the first failed write of the current outage
    last_error: str | None
    refused: int = 0  # alerts for people no longer listed when seen: not written, not announced


class AlertDispatcher:
    """Commits each alert to the database, then hands it to every sink (a failing sink never stops the rest).

    A sighting already in the database (a replay after a restart) is not announced again. With ``held_max`` > 0,
    ``on_alert`` returns at once and a writer thread commits the held alerts in order, retrying until the
    database answers; ``on_incident(error)`` hears when the database stops taking alerts (what it said) and when
    it takes them again (None).
    """

    def __init__(
        self,
        database: AlertDatabase,
        sinks: Sequence[AlertSink],
        *,
        watchlist_name: str,
        names: Mapping[str, str],
        deployment_id: int | None = None,
        after_commit: Callable[[AlertRecord], None] | None = None,
        held_max: int = 0,
        on_incident: Callable[[str | None], None] | None = None,
    ) -> None:
        self.database = database
        self.sinks = list(sinks)
        self.watchlist_name = watchlist_name
        self.names = dict(names)
        self.deployment_id = deployment_id
        self.after_commit = after_commit  # e.g. the server binding the alert to its deployment for review
        self.records: list[AlertRecord] = []
        self.held_max = held_max
        self.on_incident = on_incident or (lambda error: None)
        self._held: collections.deque[AlertFound] = collections.deque()
        self._wake = threading.Condition()
        self._closing = False
        self._written = 0
        self._lost = 0
        self._refused = 0
        self._failing_since: float | None = None
        self._last_error: str | None = None
        self._writer: threading.Thread | None = None
        if held_max > 0:
            self._writer = threading.Thread(target=self._write_held, name="openlfr-alert-writer", daemon=True)
            self._writer.start()

    def handle(self, found: AlertFound) -> AlertRecord | None:
        """The alert committed and announced; None when it was refused (the person's listing had ended)."""
        try:
            record, is_new = self.database.write(
                found, watchlist_name=self.watchlist_name, names=self.names, deployment_id=self.deployment_id
            )
        except ListingEnded as refusal:
            with self._wake:
                self._refused += 1
            log.warning("alert refused: %s", refusal)  # (who and where, never the face)
            return None
        if not is_new:
            log.info("alert %d: sighting already recorded, not announced again", record.id)
            return record
        if self.after_commit is not None:
            self.after_commit(record)
        self.records.append(record)
        for sink in self.sinks:
            try:
                sink.announce(record)
            except Exception:
                log.exception("sink %s could not take alert %d (it is in the database)", sink.name, record.id)
        return record

    def on_alert(self, found: AlertFound) -> None:
        if self._writer is None:
            self.handle(found)
            return
        with self._wake:
            if len(self._held) >= self.held_max:
                self._lost += 1
                log.error(
                    "alert LOST: %d alerts already wait for the database (the most held); %s on camera %s, "
                    "track %d is not recorded (%d lost so far)",
                    len(self._held),
                    found.person_id,
                    found.camera,
                    found.track_id,
                    self._lost,
                )
                return
            self._held.append(found)
            self._wake.notify_all()

    def status(self) -> HoldStatus:
        with self._wake:
            return HoldStatus(
                len(self._held), self._written, self._lost, self._failing_since, self._last_error, self._refused
            )

    def drain(self, timeout: float) -> bool:
        """Wait until every held alert is written (True) or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        with self._wake:
            while self._held:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(min(left, 0.5))
            return True

    def _write_held(self) -> None:
        delay, other_failures = RETRY_FIRST_S, 0
        while True:
            with self._wake:
                while not self._held and not self._closing:
                    self._wake.wait()
                if not self._held:
                    return
                found = self._held[0]
            try:
                written = self.handle(found) is not None
            except Exception as exc:
                # The store answers a driver's OperationalError as a StoreError caused by it; "the database did
                # not answer" (locked, unreachable, restarting) is retried for as long as it takes.
                transient = isinstance(exc, UNAVAILABLE) or isinstance(exc.__cause__, UNAVAILABLE)
                other_failures += 0 if transient else 1
                text = f"{type(exc).__name__}: {first_line(exc)}"[:300]
                with self._wake:
                    first = self._failing_since is None
                    if first:
                        self._failing_since = time.time()
                    self._last_error = text
                    if not transient and other_failures >= OTHER_ATTEMPTS and self._held:
                        self._held.popleft()
                        self._lost += 1
                        other_failures = 0
                        log.error("alert LOST after %d attempts: %s", OTHER_ATTEMPTS, text)
                    held, closing = len(self._held), self._closing
                if first:
                    log.warning("the database does not take alerts (%s); %d held, retrying", text, held)
                    self.on_incident(text)
                if closing:
                    return
                with self._wake:
                    self._wake.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            delay, other_failures = RETRY_FIRST_S, 0
            with self._wake:
                if self._held and self._held[0] is found:  # (close may have given up on it meanwhile)
                    self._held.popleft()
                self._written += written
                since, self._failing_since = self._failing_since, None
                self._wake.notify_all()
            if since is not None:
                outage = time.time() - since
                log.warning("the database takes alerts again after %.1f s", outage)
                self.on_incident(None)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is held (up to ``timeout`` seconds; what remains is reported as lost), then close the sinks."""
        if self._writer is not None:
            if not self.drain(timeout):
                with self._wake:
                    left = len(self._held)
                    self._lost += left
                    self._held.clear()
                log.error("alerts LOST: %d alerts were still waiting for the database at shutdown", left)
            with self._wake:
                self._closing = True
                self._wake.notify_all()
            self._writer.join(timeout=1.0)
        for sink in self.sinks:
            sink.close(timeout)
