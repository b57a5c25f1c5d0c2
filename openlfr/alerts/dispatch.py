"""From an alert the pipeline raised to an alert people hear about: commit first, then announce."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from openlfr.alerts.database import AlertDatabase
from openlfr.alerts.record import AlertFound, AlertRecord
from openlfr.alerts.sinks import AlertSink

log = logging.getLogger(__name__)


class AlertDispatcher:
    """Commits each alert to the database, then hands it to every sink (a failing sink never stops the rest)."""

    def __init__(
        self,
        database: AlertDatabase,
        sinks: Sequence[AlertSink],
        *,
        watchlist_name: str,
        names: Mapping[str, str],
        deployment_id: int | None = None,
        after_commit: Callable[[AlertRecord], None] | None = None,
    ) -> None:
        self.database = database
        self.sinks = list(sinks)
        self.watchlist_name = watchlist_name
        self.names = dict(names)
        self.deployment_id = deployment_id
        self.after_commit = after_commit  # e.g. the server binding the alert to its deployment for review
        self.records: list[AlertRecord] = []

    def handle(self, found: AlertFound) -> AlertRecord:
        record = self.database.commit(
            found, watchlist_name=self.watchlist_name, names=self.names, deployment_id=self.deployment_id
        )
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
        self.handle(found)

    def close(self, timeout: float = 10.0) -> None:
        for sink in self.sinks:
            sink.close(timeout)
