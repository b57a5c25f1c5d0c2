"""An alert and its human review as the API takes and gives them: the steps (each with an optional note), the
review's answer, and the alert with what the decision page shows beside it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from openlfr.api.schemas import FreeText, Out, Strict
from openlfr.governance.adjudication import NOTE_MAX_CHARS, Decision, Outcome

# What the person wrote with their step: optional, visible text of a few lines (``openlfr.text.visible_text``).
Note = Annotated[str, Field(max_length=NOTE_MAX_CHARS), FreeText] | None


class DecisionIn(Strict):
    decision: Decision
    note: Note = None

    model_config = ConfigDict(extra="forbid", strict=False)


class NoteIn(Strict):
    note: Note = None


class OutcomeIn(Strict):
    outcome: Outcome
    note: Note = None

    model_config = ConfigDict(extra="forbid", strict=False)


class ReviewOut(Out):
    """An alert's human side; ``stage`` also depends on the console's second-verifier rule (the caller joins it)."""

    alert_id: int
    deployment_id: int
    alert_at: datetime
    person_ref: str
    decision: str | None
    decided_by: str | None
    decided_at: datetime | None
    decision_note: str | None
    verified_by: str | None
    verified_at: datetime | None
    verification_note: str | None
    outcome: str | None
    outcome_by: str | None
    outcome_at: datetime | None
    outcome_note: str | None
    held_by: str | None
    probe_purged_at: datetime | None
    stage: str
    undo_until: datetime | None  # until when the caller may undo the latest step (theirs); null: they may not


class SeenRejectedOut(Out):
    """ "Likely the person you rejected": the earlier alert (``alert_id``, its page the link), when its face was
    seen and rejected, and this probe's match score to that face. Shown, never used to hide the alert."""

    alert_id: int
    score: float
    seen_at: datetime
    rejected_at: datetime | None


class AlertOut(ReviewOut):
    camera: str
    track: str
    score: float
    false_match_rate: float | None  # the score's calibrated FMR: 1 in 1/FMR strangers score this high; null: no table
    false_match_extrapolated: bool  # the rate is the calibration's fitted tail, beyond what it measured
    person_name: str
    category: str
    reason: str
    candidates: list[dict[str, Any]]
    has_probe: bool
    has_reference: bool
    looks: int  # how many of the track's best looks are kept: /api/alerts/{id}/looks/{1..looks}.jpg
    references: int  # the person's reference photos in the snapshot: /api/alerts/{id}/references/{1..n}.jpg
    # A retrospective search's sighting is in recorded footage (``alert_at`` is when it was processed): where in the
    # footage it was. A live camera's alert: kind "live", footage "live", the media fields null.
    kind: Literal["live", "retrospective"]
    footage: Literal["live", "recorded footage"]
    media_time: float | None  # seconds into the file
    media_file: str | None  # the file as the search names it (never its path on the server)
    media_started_at: datetime | None  # when the footage began, where the file's metadata says
    media_at: datetime | None  # the moment in the footage: media_started_at + media_time
    seen_rejected: SeenRejectedOut | None  # null: no earlier rejected face is closer than the person's references
