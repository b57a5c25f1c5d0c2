"""Live or recorded: what an alert's footage was, and where in it the person was seen.

An alert of a retrospective search is a sighting in recorded footage, maybe hours or days old, and every view of
it says so (the API, the queue, the alert page, the sinks' payload): kind ``retrospective``, footage "recorded
footage", the file (as the search names it: an upload's reference or a path under an allowed directory, never
where it lies on the server), the seconds into it (``Alert.media_time_s``: the presentation time of the frame that
completed the evidence), and, where the file's metadata said when it was recorded (read when the search was
drafted and kept with its camera as ``recorded_from``), the moment in the footage. A live camera's alert says
"live": its stored media time is only a position in the camera's connection, which tells nobody anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from openlfr.clock import utc
from openlfr.governance.deployments import Kind
from openlfr.store.alert_models import Alert
from openlfr.store.governance_models import Deployment

RECORDED = "recorded footage"
LIVE = "live"
# A retrospective search's camera record: when its file's footage began, where the file's metadata says.
RECORDED_FROM = "recorded_from"


@dataclass(frozen=True)
class MediaTime:
    """Where in recorded footage a sighting was."""

    file: str
    seconds: float
    started_at: datetime | None = None  # when the footage began, where its metadata says

    @property
    def at(self) -> datetime | None:
        """The moment in the footage, where its start is known."""
        return None if self.started_at is None else self.started_at + timedelta(seconds=self.seconds)


def is_recorded(deployment: Deployment | None) -> bool:
    return deployment is not None and deployment.kind == Kind.RETROSPECTIVE.value


def media_time(deployment: Deployment | None, alert: Alert) -> MediaTime | None:
    """The alert's place in its footage when it came from a retrospective search; None for a live camera."""
    if not is_recorded(deployment) or alert.media_time_s is None:
        return None
    assert deployment is not None
    camera = next((c for c in deployment.cameras if c.get("name") == alert.camera), {})
    began = camera.get(RECORDED_FROM)
    return MediaTime(
        file=str(camera.get("source", "")),
        seconds=float(alert.media_time_s),
        started_at=utc(datetime.fromisoformat(began)) if began else None,
    )


def footage_facts(deployment: Deployment | None, alert: Alert) -> dict[str, Any]:
    """The same, as JSON values (a sink's payload): ``kind``, ``footage``, ``media_time`` (seconds into the file),
    ``media_file``, ``media_started_at`` and ``media_at`` (ISO times); the media fields null for a live camera."""
    media = media_time(deployment, alert)
    started, at = (None, None) if media is None else (media.started_at, media.at)
    return {
        "kind": Kind.RETROSPECTIVE.value if is_recorded(deployment) else Kind.LIVE.value,
        "footage": RECORDED if is_recorded(deployment) else LIVE,
        "media_time": None if media is None else media.seconds,
        "media_file": None if media is None else media.file,
        "media_started_at": None if started is None else started.isoformat(),
        "media_at": None if at is None else at.isoformat(),
    }
