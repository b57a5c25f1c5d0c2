"""Errors a user can act on. The CLI prints them as one line, never as a traceback."""


class OpenLFRError(Exception):
    """Base class: the message is written for the person at the keyboard."""


class ImageError(OpenLFRError):
    """An image could not be read (missing, not an image, truncated, too large)."""


class ModelError(OpenLFRError):
    """A model file is missing, malformed or of an unsupported shape."""


class InvalidText(OpenLFRError):
    """A text value cannot be stored as given (it holds a NUL character); ``openlfr.text.plain_text`` checks."""

    status = 400
