"""Text from outside (a form, an API body, a command-line argument) that can be stored as it is.

A NUL character (``\\x00``) is the one character no text column takes on every database: PostgreSQL refuses it
(the driver raises, which used to surface as a 500), SQLite keeps it and then cuts the value short in places.
Front doors call :func:`plain_text` to name the field in the refusal; the store refuses any NUL that reaches it
anyway (``openlfr.store.db``), so nothing half-validated is ever written.
"""

from __future__ import annotations

from collections.abc import Iterable

from openlfr.errors import InvalidText

NUL = "\x00"


def plain_text(value: str, field: str = "the text") -> str:
    """``value`` unchanged, or ``InvalidText`` naming ``field`` when it holds a NUL character."""
    if NUL in value:
        raise InvalidText(f"{field} contains a NUL character (\\x00), which cannot be stored; remove it")
    return value


def holds_nul(values: Iterable[object]) -> bool:
    """Whether any of the values is a string holding a NUL character (other types are not text)."""
    return any(isinstance(value, str) and NUL in value for value in values)


def first_line(error: object) -> str:
    """An error's first line, at most 300 characters, or its type's name when it says nothing. A database driver's
    error (``orig`` of SQLAlchemy's) is read rather than SQLAlchemy's text, which goes on with the SQL and its
    parameters: those are never shown or logged."""
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
