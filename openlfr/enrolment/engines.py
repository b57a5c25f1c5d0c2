"""The face engines a process keeps for still photos: built on first use, then shared (loading the models costs
more than analysing a photo, and the server analyses many). Enrolment uploads use the stills profile; photo
search the live profile, so that its probes are compared as a camera's are."""

from __future__ import annotations

import threading
from functools import lru_cache

from openlfr.settings import Settings
from openlfr.vision.engine import FaceEngine, build_engine

_BUILDING = threading.Lock()


def process_engine(settings: Settings, *, stills: bool) -> FaceEngine:
    """The engine of these settings and profile, built once per process. Callers that share it between threads
    hold their own lock while a photo goes through it."""
    with _BUILDING:
        return _built(settings.model_dump_json(), stills)


@lru_cache(maxsize=2)
def _built(settings_key: str, stills: bool) -> FaceEngine:
    return build_engine(Settings.model_validate_json(settings_key), stills=stills, second_opinion=stills)
