"""How a night stops when it is told to: SIGTERM (cron's `timeout`, a service manager) and SIGINT
(Ctrl-C) end it cleanly, and the worker processes Luigi forks (``--workers N``) die with it.

    NightStopped                  the KeyboardInterrupt a SIGTERM becomes (signum: which signal)
    stop_on_signals()             context manager: inside it SIGTERM raises NightStopped in the
                                  main thread, as SIGINT raises KeyboardInterrupt; the previous
                                  handlers come back after it
    exit_code_of(signum)          128 + the signal's number, the shell's convention (130, 143)
    die_with_parent()             in a forked worker: ask Linux to SIGTERM it when its parent dies

Stopping is clean because every output is written through models.utils.atomic.atomic_path, which
removes its temporary file on any BaseException, and every lock is a context manager: the
interrupt unwinds through both. A SIGKILL cannot be caught: its temporary files are removed by
the next write of the same target, and its forked workers get SIGTERM from die_with_parent.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Iterator
from types import FrameType

PR_SET_PDEATHSIG = 1  # linux/prctl.h


class NightStopped(KeyboardInterrupt):
    """A night stopped by a signal. A KeyboardInterrupt, so that Luigi's worker lets it through
    (it records any other exception as a task failure and carries on)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise NightStopped(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM raises NightStopped(SIGTERM) in the main thread while inside the block (SIGINT
    keeps raising KeyboardInterrupt). Must be entered from the main thread."""
    previous = signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_code_of(signum: int) -> int:
    """The exit code of a night stopped by `signum`: 128 + its number (SIGINT 130, SIGTERM 143)."""
    return 128 + int(signum)


def die_with_parent(parent_pid: int) -> bool:
    """In a forked child: have the kernel send SIGTERM when the parent exits (Linux prctl), so
    that a killed night leaves no orphan writing into its folder or holding its lock; exits at
    once if the parent is already gone. False where prctl is unavailable (not Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
    return True
