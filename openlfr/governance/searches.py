"""The limits a photo search is held to (``openlfr.services.photo_search`` applies them), apart from the search so
that a form or ``openlfr search --help`` can state them without loading the face models."""

from __future__ import annotations

MIN_REASON_CHARS = 20  # a search says why it is made, in words a reviewer can weigh (it is audited)
MAX_REASON_CHARS = 5000
MAX_TOP = 50  # candidates shown at most
MAX_INVESTIGATION_CHARS = 100
