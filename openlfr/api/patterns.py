"""The request rules of ``openlfr.api.schemas`` that are checked in code, written as the JSON Schema patterns the
OpenAPI document gives a client (issue 23): what ``openlfr.text.visible_text`` refuses, and the camera sources a
draft may name."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from annotated_types import MaxLen
from pydantic import AfterValidator, GetJsonSchemaHandler, ValidationInfo
from pydantic.fields import FieldInfo

from openlfr.errors import InvalidText
from openlfr.text import visible_text

# What the document says of the characters ``visible_text`` refuses, as a JSON Schema pattern's class: every control
# character, the format characters that hide or turn text round, line and paragraph separators, private use (the
# joiners and, in text of several lines, new lines and tabs, aside). OpenAPI cannot name a Unicode category, so
# unassigned code points and the rarer format characters are refused (422) beyond what the pattern says.
HIDDEN_COMMON = (
    r"\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b\u200e\u200f"
    r"\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb\ue000-\uf8ff"
)


def hidden_class(*, names: bool = False, lines: bool = False) -> str:
    return HIDDEN_COMMON + r"\x00-\x08" + ("" if lines else r"\t\n\r") + ("" if names or lines else r"\u200c\u200d")


def visible_pattern(hidden: str, *, filled: bool, stripped: bool = True) -> str:
    """No character of ``hidden``; ``filled``: more than white space; ``stripped``: white space around it is taken
    off before the check (the models' ``str_strip_whitespace``)."""
    edge = r"\s*" if stripped else ""
    body = f"[^{hidden}]*[^\\s{hidden}][^{hidden}]*" if filled else f"[^{hidden}]*"
    return f"^{edge}{body}{edge}$"


# A text query parameter's pattern (checked in code, where the parameter can be named): a filter, may be empty.
VISIBLE_QUERY = {"pattern": visible_pattern(hidden_class(), filled=False)}


def source_pattern(schemes_taken: Iterable[str]) -> str:
    """The camera sources ``CameraIn`` takes: a stream URL with a host, camera:N, an upload's reference or an
    absolute path without a '..' part (an upload named ``*.part``, one still arriving, is refused beyond this)."""
    hidden = hidden_class()
    schemes = "|".join("".join(f"[{c}{c.upper()}]" for c in scheme) for scheme in sorted(schemes_taken))
    url = f"(?:{schemes})://[^/?#\\[\\]{hidden}]+(?:[/?#][^{hidden}]*)?"
    part = f"[^/{hidden}]"
    segment = f"(?:[^/.{hidden}]{part}*|\\.[^/.{hidden}]{part}*|\\.\\.{part}+|\\.)?"
    path = f"/(?:{segment}/)*{segment}"
    return f"^\\s*(?:{url}|camera:[0-9]{{1,2}}|footage:[0-9a-f]{{16}}-[A-Za-z0-9._-]{{1,80}}|{path})\\s*$"


@dataclass(frozen=True, slots=True)
class _VisibleCheck(AfterValidator):
    """The check, and in the JSON schema the pattern saying it (and, where a value may not be empty once its
    surrounding white space is stripped, that it holds more than white space)."""

    hidden: str = ""

    def __get_pydantic_json_schema__(self, core: Any, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        schema = dict(handler(core))
        schema["pattern"] = visible_pattern(self.hidden, filled=schema.get("minLength", 0) >= 1)
        return schema


def visible(*, names: bool = False, lines: bool = False) -> AfterValidator:
    """Refuses, naming the field, a character that is not shown as itself (``openlfr.text.visible_text``)."""

    def check(value: str, info: ValidationInfo) -> str:
        try:
            return visible_text(value, f"'{info.field_name}'", names=names, lines=lines)
        except InvalidText as refused:
            raise ValueError(str(refused)) from None

    return _VisibleCheck(check, hidden_class(names=names, lines=lines))


# The patterns of fields whose white space is kept (``UserIn``: an account's name and display name).
KEPT_SPACE_ID: dict[str, Any] = {"pattern": visible_pattern(hidden_class(), filled=True, stripped=False)}
KEPT_SPACE_NAME: dict[str, Any] = {"pattern": visible_pattern(hidden_class(names=True), filled=False, stripped=False)}
CAMERA_NAME_PATTERN = r"^\s*[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}\s*$"  # schemas.CAMERA_NAME, white space around stripped


def not_longer_than_documented(fields: dict[str, FieldInfo], data: Any) -> Any:
    """A string's maxLength holds as sent, white space around it included (stripped only after this check), as the
    document says: no client may send more than it allows."""
    if isinstance(data, dict):
        for name, field in fields.items():
            value = data.get(field.alias or name)
            limit = next((m.max_length for m in field.metadata if isinstance(m, MaxLen)), None)
            if isinstance(value, str) and limit is not None and len(value) > limit:
                raise ValueError(f"'{name}' is longer than {limit} characters")
    return data
