"""Errors a user can act on, matched by type. The CLI prints them as one line (never a traceback); the API
answers each type with its own HTTP status, found by type in one table (``openlfr.api.app.PLAIN_ANSWERS``), never by
an attribute.

Stage-specific refusals keep their home in their stage and subclass these (``StoreError``, ``SourceError``,
``CalibrationError``, ``GovernanceError``...); the types a front door answers differently live here.
"""

from __future__ import annotations

from collections.abc import Sequence


class OpenLFRError(Exception):
    """Base class: the message is written for the person at the keyboard."""


class ImageError(OpenLFRError):
    """An image could not be read (missing, not an image, truncated, too large)."""


class ModelError(OpenLFRError):
    """A model file is missing, malformed or of an unsupported shape."""


class ModelNotBuilt(ModelError):
    """A face model's file is not in the model cache (or is damaged): ``openlfr models build`` makes it. Nothing
    converts or fetches a model while the system runs; the API answers 503 (the server cannot analyse faces yet)."""


class NotFound(OpenLFRError):
    """The thing asked for does not exist (the API answers 404)."""


class EnrolmentRefused(OpenLFRError):
    """A person was not enrolled; nothing was written. ``problems`` pairs each photo (or "") with its reason."""

    def __init__(self, reference_id: str, problems: Sequence[tuple[str, str]]) -> None:
        self.reference_id = reference_id
        self.problems = list(problems)
        details = "; ".join(f"{source}: {reason}" if source else reason for source, reason in self.problems)
        super().__init__(f"{reference_id} not enrolled, nothing written: {details}")


class InvalidText(OpenLFRError):
    """A text value cannot be stored as given (it holds a NUL character); ``openlfr.text.plain_text`` checks."""


class InvalidNumber(OpenLFRError):
    """A whole number outside what the database holds (64-bit signed), such as an id of 2^63 or more."""


class InvalidTime(OpenLFRError):
    """A time that cannot be expressed in UTC within years 1-9999 (year 9999 with a negative offset, say)."""


class UploadRefused(OpenLFRError):
    """An uploaded file was refused before anything was decoded (400)."""


class UploadTooLarge(UploadRefused):
    """An uploaded file is over the size limit (413)."""


class AccountError(OpenLFRError):
    """An account cannot be created or changed as asked (a bad name, a weak password...)."""


class LoginRefused(OpenLFRError):
    """A login attempt failed: wrong name or password."""


class LoginThrottled(LoginRefused):
    """Too many failed logins for the name or the address; the password is not even checked."""
