"""The published record of a deployment, as forces publish it, and its CSV.

One row per deployment: date, place, duration, watchlist size, faces seen, alerts, confirmed, false alerts,
outcomes, and the false-alert rate (false alerts per face seen, also given as "1 in N"). It is built from
counts and decisions only — nothing in it identifies anyone — so it outlives every purge.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime

from openlfr.clock import utc
from openlfr.governance.adjudication import Decision, Outcome

NO_RATE = "-"  # the false-alert rate "1 in N" of a deployment without false alerts (an empty cell in the CSV)


@dataclass(frozen=True)
class DeploymentRecord:
    deployment_id: int
    name: str
    date: str  # YYYY-MM-DD of the start, UTC
    place: str
    purpose: str
    status: str
    kind: str  # "live" (cameras) or "retrospective" (a search of recorded footage)
    starts_at: str
    ends_at: str
    duration_minutes: int
    watchlist_size: int
    faces_seen: int
    alerts: int
    confirmed: int
    false_alerts: int
    cannot_tell: int
    undecided: int
    verified: int
    arrested: int
    engaged_no_further_action: int
    not_located: int
    false_alert_rate: float  # false alerts / faces seen
    false_alert_one_in: str  # "1 in 33,000", or "-" when there were none
    # Where its alerts and decisions were sent: the configured sinks it was authorised with, by name ("" for none).
    sinks: str = ""
    # A retrospective search's share of its footage actually read (0 to 1; below 1 when a file was truncated or
    # damaged); None for a live deployment, or a search not processed yet.
    coverage: float | None = None
    # The audit chain's head as of the deployment's end, "SEQ:HASH" (`openlfr audit verify --anchor`); "" before
    # it ends. Published with the record, it proves later that nothing of the log up to then was cut off.
    audit_anchor: str = ""

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def build_record(
    deployment_id: int,
    name: str,
    place: str,
    purpose: str,
    status: str,
    starts_at: datetime,
    ends_at: datetime,
    stopped_at: datetime | None,
    watchlist_size: int,
    faces_seen: int,
    reviews: Iterable[tuple[str | None, str | None, str | None]],
    audit_anchor: str = "",
    kind: str = "live",
    coverage: float | None = None,
    sinks: Sequence[str] = (),
) -> DeploymentRecord:
    """``reviews``: one (decision, verified_by, outcome) per alert; (None, None, None) for an undecided alert."""
    start = utc(starts_at)
    stop = utc(stopped_at) if stopped_at is not None else utc(ends_at)
    decisions: list[str | None] = []
    verified = 0
    outcomes: list[str] = []
    for decision, verified_by, outcome in reviews:
        decisions.append(decision)
        verified += verified_by is not None
        if outcome is not None:
            outcomes.append(outcome)
    false_alerts = decisions.count(Decision.NOT_A_MATCH.value)
    rate = false_alerts / faces_seen if faces_seen > 0 else 0.0
    return DeploymentRecord(
        deployment_id=deployment_id,
        name=name,
        date=f"{start:%Y-%m-%d}",
        place=place,
        purpose=purpose,
        status=status,
        kind=kind,
        starts_at=start.isoformat(timespec="seconds"),
        ends_at=utc(ends_at).isoformat(timespec="seconds"),
        duration_minutes=max(0, round((stop - start).total_seconds() / 60)),
        watchlist_size=watchlist_size,
        faces_seen=faces_seen,
        alerts=len(decisions),
        confirmed=decisions.count(Decision.CONFIRMED.value),
        false_alerts=false_alerts,
        cannot_tell=decisions.count(Decision.CANNOT_TELL.value),
        undecided=decisions.count(None),
        verified=verified,
        arrested=outcomes.count(Outcome.ARRESTED.value),
        engaged_no_further_action=outcomes.count(Outcome.ENGAGED_NO_FURTHER_ACTION.value),
        not_located=outcomes.count(Outcome.NOT_LOCATED.value),
        false_alert_rate=round(rate, 8),
        false_alert_one_in=f"1 in {round(1 / rate):,}" if rate > 0 else NO_RATE,
        sinks=", ".join(sinks),
        coverage=coverage,
        audit_anchor=audit_anchor,
    )


def spreadsheet_safe(value: object) -> object:
    """Text starting with = + - @ is run as a formula by spreadsheets: quote it (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _cell(column: str, value: object) -> object:
    """A CSV cell: empty for a rate there is not (no false alerts; pages show "-"), else spreadsheet-safe text."""
    if column == "false_alert_one_in" and value == NO_RATE:
        return ""
    return spreadsheet_safe(value)


def records_csv(records: Sequence[DeploymentRecord]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=DeploymentRecord.columns(), lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: _cell(k, v) for k, v in asdict(record).items()})
    return buffer.getvalue()
