"""Waiting in tests: on a condition, polled, never on a wall-clock budget that a busy machine overruns.

A loaded machine (a CI runner, two cores shared with other work, ``make test`` with a CPU hog beside it) runs
everything several times slower, so a wait that fails after what an idle machine needs fails for nothing, and a
fixed sleep "long enough for X" is sometimes too short. A wait here polls what it waits for, fails at once when
``gone`` says it can no longer happen (the process died, the clip ended without it), and otherwise gives up only
as a guard against a hang: ``PATIENCE`` times what an idle machine needs.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

import pytest

# 2 cores at load 6 run a test about 3x slower; twice that before a wait counts as hung.
PATIENCE = float(os.environ.get("OPENLFR_TEST_PATIENCE", "6"))


def hang_guard(idle_s: float) -> float:
    """The seconds after which a wait that takes ``idle_s`` on an idle machine counts as hung."""
    return idle_s * PATIENCE


def wait_for(
    what: str,
    check: Callable[[], bool],
    idle_s: float,
    every: float = 0.2,
    gone: Callable[[], str | None] | None = None,
) -> float:
    """Poll until ``check()``; the seconds it took. Fails at once when ``gone()`` gives a reason, and after the
    hang guard of ``idle_s``."""
    started = time.monotonic()
    guard = hang_guard(idle_s)
    while not check():
        reason = gone() if gone is not None else None
        if reason:
            pytest.fail(f"{what} will not happen: {reason}")
        if time.monotonic() - started > guard:
            pytest.fail(f"hung: no {what} after {guard:.0f} s ({PATIENCE:g} x the {idle_s:.0f} s of an idle machine)")
        time.sleep(every)
    return time.monotonic() - started


async def wait_async(what: str, check: Callable[[], bool], idle_s: float, every: float = 0.01) -> float:
    """``wait_for`` on an event loop: the loop keeps serving while the condition is polled."""
    started = time.monotonic()
    guard = hang_guard(idle_s)
    while not check():
        if time.monotonic() - started > guard:
            pytest.fail(f"hung: no {what} after {guard:.0f} s ({PATIENCE:g} x the {idle_s:.0f} s of an idle machine)")
        await asyncio.sleep(every)
    return time.monotonic() - started
