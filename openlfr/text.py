"""Text from outside (a form, an API body, a command-line argument) that can be stored as it is.

A NUL character (``\\x00``) is the one character no text column takes on every database: PostgreSQL refuses it
(the driver raises, which used to surface as a 500), SQLite keeps it and then cuts the value short in places.
Front doors call :func:`plain_text` to name the field in the refusal; the store refuses any NUL that reaches it
anyway (``openlfr.store.db``), so nothing half-validated is ever written.

Names and ids are shown to people who act on them (an alert's person, an audit entry's actor, a deployment's
place), so they must read as what they are: :func:`visible_text` refuses the characters that are not shown as
themselves (controls, bidirectional overrides and other format characters, private-use, unassigned and surrogate
code points, line and paragraph separators). ``U+202E`` turns ``evil_rtl`` round on the screen; a zero-width space
makes two ids that look alike differ.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from openlfr.errors import InvalidText

NUL = "\x00"


def plain_text(value: str, field: str = "the text") -> str:
    """``value`` unchanged, or ``InvalidText`` naming ``field`` when it holds a NUL character."""
    if NUL in value:
        raise InvalidText(f"{field} contains a NUL character (\\x00), which cannot be stored; remove it")
    return value


# Cc controls, Cf format (bidi overrides and isolates, zero-width characters, soft hyphen), Co private use,
# Cs surrogates, Cn unassigned, Zl and Zp line and paragraph separators.
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})
# The zero-width non-joiner and joiner spell words in Persian, Urdu and the Indic scripts (and join emoji): a
# display name may hold them, an identifier may not (they would make two ids that look the same).
JOINERS = frozenset({"\u200c", "\u200d"})
HIDDEN_KINDS = {
    "Cc": "a control character",
    "Cf": "a format character",
    "Co": "a private-use character",
    "Cs": "a surrogate",
    "Cn": "an unassigned code point",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
}
LINE_BREAKS = frozenset({"\n", "\r", "\t"})


def visible_text(value: str, field: str, *, names: bool = False, lines: bool = False) -> str:
    """``value`` unchanged, or ``InvalidText`` naming ``field`` and the first character not shown as itself.

    ``names``: a display name (a person's, a place): the joiners some scripts need are allowed. ``lines``: text of
    several lines (a purpose, a justification): new lines and tabs are allowed too."""
    allowed = (JOINERS if names or lines else frozenset()) | (LINE_BREAKS if lines else frozenset())
    for char in value:
        if char not in allowed and unicodedata.category(char) in HIDDEN_CATEGORIES:
            what = unicodedata.name(char, "") or HIDDEN_KINDS[unicodedata.category(char)]
            raise InvalidText(
                f"{field} contains U+{ord(char):04X} ({what}), a character that is not shown as itself and could "
                "make it read as something else; remove it"
            )
    return value


def escaped(value: str) -> str:
    """``value`` with each character that :func:`visible_text` refuses written as its code point (``\\u202e``), for
    a message or a table that must quote a refused name without letting it turn the line round."""
    return "".join(
        (f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
        if unicodedata.category(char) in HIDDEN_CATEGORIES
        else char
        for char in value
    )


def holds_nul(values: Iterable[object]) -> bool:
    """Whether any of the values is a string holding a NUL character (other types are not text)."""
    return any(isinstance(value, str) and NUL in value for value in values)


def first_line(error: object) -> str:
    """An error's first line, at most 300 characters, or its type's name when it says nothing. A database driver's
    error (``orig`` of SQLAlchemy's) is read rather than SQLAlchemy's text, which goes on with the SQL and its
    parameters: those are never shown or logged."""
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
