"""Request and response bodies of the JSON API. Inputs are strict: unknown fields, wrong types, naive times and
over-long strings are refused with 422 before any handler runs. Every answer has a model here, read off the
application's objects by attribute (``from_attributes``), never copied field by field; where the application's
own dataclass is the answer (a deployment's record, a retention report) the route answers with it directly."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlparse

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)

from openlfr.api.patterns import (
    CAMERA_NAME_PATTERN,
    KEPT_SPACE_ID,
    KEPT_SPACE_NAME,
    not_longer_than_documented,
    source_pattern,
    visible,
)
from openlfr.clock import utc_now
from openlfr.errors import InvalidTime
from openlfr.governance import deployments
from openlfr.governance.roles import Role
from openlfr.services.camera_secrets import shown as redacted_cameras
from openlfr.services.footage import is_reference

CAMERA_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$")
STREAM_SCHEMES = {"rtsp", "rtsps", "rtmp", "http", "https", "srt", "udp"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    @model_validator(mode="before")
    @classmethod
    def _not_longer_than_documented(cls, data: Any) -> Any:
        return not_longer_than_documented(cls.model_fields, data)


# Every name and id a person reads (identifiers: no joiners; display names: the joiners some scripts need; free
# text of several lines: new lines and tabs too).
Identifier = visible()
DisplayName = visible(names=True)
FreeText = visible(lines=True)
# A time a person may name: years 1970-2999 in UTC, so that neither its conversion to UTC nor the durations the
# governance rules add to it (retention after a window's end) can leave the calendar (year 9999 -05:00, 0001 +05:00).
# Refused with a 400 (InvalidTime), not a 422: OpenAPI cannot bound a date-time, so the document names it as a 400.
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(3000, 1, 1, tzinfo=UTC)


def _in_calendar(value: datetime, info: ValidationInfo) -> datetime:
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        raise InvalidTime(f"'{info.field_name}' is outside the calendar once converted to UTC") from None
    if not EARLIEST_TIME <= in_utc < LATEST_TIME:
        raise InvalidTime(f"'{info.field_name}' must be between 1970 and 2999 (UTC)")
    return in_utc


UtcTime = Annotated[AwareDatetime, AfterValidator(_in_calendar)]
Text5000 = Annotated[str, Field(min_length=1, max_length=5000), FreeText]


class CameraIn(Strict):
    name: Annotated[str, Field(min_length=1, max_length=64, json_schema_extra={"pattern": CAMERA_NAME_PATTERN})]
    source: Annotated[
        str,
        Field(min_length=1, max_length=1000, json_schema_extra={"pattern": source_pattern(STREAM_SCHEMES)}),
        Identifier,
    ]

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not CAMERA_NAME.match(value):
            raise ValueError("a camera name is letters, digits, spaces, '.', '_' or '-' (up to 64)")
        return value

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme in STREAM_SCHEMES and parsed.netloc:
            return value
        if re.fullmatch(r"(camera:\d{1,2}|/dev/video\d{1,2})", value) or is_reference(value):
            return value
        path = Path(value)
        if not path.is_absolute() or ".." in path.parts:
            raise ValueError(
                "a camera source is a stream URL (rtsp://, http://, ...), camera:N, uploaded footage (footage:NAME, as "
                "PUT /api/footage answers it) or an absolute file path"
            )
        return value


class DraftIn(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200), DisplayName]
    place: Annotated[str, Field(min_length=1, max_length=300), DisplayName]
    purpose: Text5000
    starts_at: UtcTime
    ends_at: UtcTime
    cameras: Annotated[list[CameraIn], Field(min_length=1, max_length=16)]
    watchlist: Annotated[str, Field(min_length=1, max_length=200), Identifier]
    threshold: Annotated[float | None, Field(gt=0.0, lt=1.0)] = None
    target_fpir: Annotated[float | None, Field(gt=0.0, lt=1.0)] = None
    # "retrospective": the cameras' sources are recorded files (under the admin's rfr_source_dirs); with an
    # urgent_reason it runs before its authorisation, which must follow within rfr_authorise_within_hours.
    kind: Literal["live", "retrospective"] = "live"
    urgent_reason: Annotated[str, Field(min_length=1, max_length=5000), FreeText] | None = None
    # The configured sinks (OPENLFR_SINKS) its alerts and decisions go to, by name.
    sinks: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=200, pattern=r"\S")]], Field(max_length=16)
    ] = []

    model_config = ConfigDict(extra="forbid", strict=False, str_strip_whitespace=True)

    @field_validator("threshold", "target_fpir", mode="before")
    @classmethod
    def _numbers_only(cls, value: Any) -> Any:
        # Not strict mode as a whole (times arrive as ISO strings), but a number must be a number.
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError("must be a number")
        return value


class JustificationIn(Strict):
    justification: Text5000


class ReasonIn(Strict):
    reason: Text5000


class EndIn(Strict):
    reason: Text5000 | None = None  # why it ends before its window closes (audited); older clients send none


class UserIn(Strict):
    # white space is kept here (a password's is part of it): the patterns say so
    username: Annotated[str, Field(min_length=2, max_length=64, json_schema_extra=KEPT_SPACE_ID), Identifier]
    password: Annotated[str, Field(min_length=1, max_length=1024)]
    role: Role
    display_name: Annotated[str, Field(max_length=200, json_schema_extra=KEPT_SPACE_NAME), DisplayName] = ""

    model_config = ConfigDict(extra="forbid", strict=False, str_strip_whitespace=False)


class RoleIn(Strict):
    role: Role

    model_config = ConfigDict(extra="forbid", strict=False)


class PasswordIn(Strict):
    """A new password set by an administrator (the account's sessions and tokens end)."""

    password: Annotated[str, Field(min_length=1, max_length=1024)]

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=False)


class PasswordChangeIn(Strict):
    """A person changing their own password proves they know the current one."""

    current_password: Annotated[str, Field(min_length=1, max_length=1024)]
    new_password: Annotated[str, Field(min_length=1, max_length=1024)]

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=False)


class SettingsIn(Strict):
    require_second_verifier: StrictBool


class WatchlistIn(Strict):
    name: Annotated[str, Field(min_length=1, max_length=100), Identifier]
    purpose: Annotated[str, Field(max_length=5000), FreeText] = ""


class Out(BaseModel):
    """An answer, validated from an object's attributes (an ORM row, a dataclass)."""

    model_config = ConfigDict(from_attributes=True)

    @classmethod
    def each(cls, rows: Iterable[object]) -> list[Self]:
        """One answer per row, in order (a list route's answer)."""
        return [cls.model_validate(row) for row in rows]


class Joined:
    """Several objects read as one by ``model_validate``: a name is looked up in ``values`` first, then in each
    part in turn (an alert's review before its facts)."""

    def __init__(self, *parts: object, **values: Any) -> None:
        self._parts, self._values = parts, values

    def __getattr__(self, name: str) -> Any:
        if name in self._values:
            return self._values[name]
        for part in self._parts:
            if hasattr(part, name):
                return getattr(part, name)
        raise AttributeError(name)


class MeOut(Out):
    username: str
    role: Role
    csrf_token: str


class DetailOut(Out):
    detail: str


class UserOut(Out):
    id: int
    username: str
    display_name: str
    role: str
    active: bool
    created_at: datetime
    created_by: str


class ConsoleSettingsOut(Out):
    require_second_verifier: bool


class WatchlistOut(Out):
    name: str
    purpose: str
    people: int
    active_people: int


class WatchlistNameOut(Out):
    name: str


class EnrolledOut(Out):
    watchlist: str
    person: str
    display_name: str
    images: int
    expires_at: str  # ISO 8601, as the enrolment reports it


class RemovedImagesOut(Out):
    removed_images: int


class RefusedPersonOut(Out):
    person: str
    reasons: list[str]


class ReembedOut(Out):
    """A re-embedding run (``openlfr watchlist reembed``): counts of people, and each refused one with why."""

    watchlist: str
    model_id: str
    people: int
    reembedded: int
    up_to_date: int
    refused: list[RefusedPersonOut]
    images_added: int
    expired_skipped: int


class CameraStateOut(BaseModel):
    """A camera's health: connecting, streaming, stalled, reconnecting, failed or finished (no URL in ``reason``)."""

    state: str
    since: datetime
    reason: str


class DeploymentOut(Out):
    """A deployment row, with its phase and whether it may match judged at one moment (``as_of``)."""

    id: int
    name: str
    place: str
    purpose: str
    starts_at: datetime
    ends_at: datetime
    cameras: list[dict[str, Any]]
    watchlist: str = Field(validation_alias="watchlist_name")
    sinks: list[str] = []  # where its alerts and decisions are sent (configured sinks, by name)
    threshold: float | None
    target_fpir: float | None
    status: str
    created_by: str
    authorised_by: str | None
    authorised_at: datetime | None
    justification: str | None
    cancelled_by: str | None
    cancel_reason: str | None
    ended_at: datetime | None
    effective_threshold: float | None
    threshold_note: str | None
    watchlist_size: int
    snapshot_destroyed_at: datetime | None
    frames: int
    faces_seen: int
    alerts_raised: int
    kind: str
    urgent_until: datetime | None
    urgent_reason: str | None
    authorisation_lapsed_at: datetime | None
    media_seconds: float | None
    media_done_seconds: float
    media_frames: int | None  # the frames a retrospective search's files promise
    coverage: float | None  # once processed: the share of its footage its decoded frames covered (0 to 1)
    processing_started_at: datetime | None
    processing_finished_at: datetime | None
    cancelled_at: datetime | None = Field(exclude=True)  # read by the phase, not shown
    as_of: datetime = Field(default_factory=utc_now, exclude=True)

    # Judged by the model itself, once, from the fields above (``_judge``); never read from the row.
    phase: str = ""
    may_match: bool = False
    may_match_reason: str = ""
    progress: float | None = None  # a retrospective search's share of its footage analysed so far (0 to 1)
    # Each camera's health (``GET /api/deployments/{id}`` only): name -> state, since when, why.
    camera_states: dict[str, CameraStateOut] = Field(default_factory=dict)

    @field_validator("cameras")
    @classmethod
    def _cameras_shown(cls, cameras: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return redacted_cameras(cameras)  # a camera URL is a secret: never answered as stored

    @model_validator(mode="after")
    def _judge(self) -> DeploymentOut:
        permission = deployments.may_match(self, self.as_of)
        self.phase = deployments.phase(self, self.as_of).value
        self.may_match, self.may_match_reason = permission.allowed, permission.reason
        if self.media_seconds:
            self.progress = round(min(1.0, self.media_done_seconds / self.media_seconds), 4)
        return self


class FootageOut(BaseModel):
    """Footage uploaded for a retrospective search: ``source`` (``footage:NAME``) is what a draft's camera names."""

    source: str
    bytes: int
    sha256: str
    seconds: float


class AuditEntryOut(Out):
    """An entry as a reader takes it in: what was done to what, by whom, then the particulars and the link."""

    seq: int
    at: datetime  # never before the entry before it
    clock_at: datetime | None  # the clock's own reading: before ``at`` only if the clock was set back
    action: str
    target: str
    actor: str
    role: str
    details: dict[str, Any]
    hash: str


class VerdictOut(Out):
    ok: bool
    entries: int
    first_bad_seq: int | None
    problem: str | None
    message: str
