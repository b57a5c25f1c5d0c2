"""A child process of the pipeline dies with its parent: no camera analysis (about 300 MB each) or detector is
left running after ``openlfr serve``, ``worker`` or ``scan`` is killed, even by SIGKILL.

Two mechanisms, called first thing in the child: Linux's parent-death signal (``prctl(PR_SET_PDEATHSIG,
SIGKILL)``: the kernel kills the child when the thread that started it ends, so children are started from a
thread that outlives them, the runner's), and, everywhere, a watchdog thread that ends the process within
``WATCHDOG_S`` once its parent pid changes (the parent died and the child was re-parented). The child's
``comm`` name says what it is (``ps``, ``top``, ``/proc/PID/comm``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
import time

PR_SET_NAME = 15
PR_SET_PDEATHSIG = 1
WATCHDOG_S = 1.0
ORPHANED_EXIT = 70  # the exit code of a child whose parent died


def _prctl(option: int, value: int | bytes) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    return False


def die_with_parent(name: str) -> None:
    """Make this (child) process end when its parent does; name it ``name`` (at most 15 bytes are kept)."""
    parent = multiprocessing.parent_process()
    parent_pid = parent.pid if parent is not None and parent.pid is not None else os.getppid()
    _prctl(PR_SET_NAME, name.encode()[:15])
    _prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != parent_pid:  # the parent died before the signal was asked for
        os._exit(ORPHANED_EXIT)

    def watch() -> None:
        while True:
            time.sleep(WATCHDOG_S)
            if os.getppid() != parent_pid:
                os._exit(ORPHANED_EXIT)

    threading.Thread(target=watch, name="openlfr-lifeline", daemon=True).start()
