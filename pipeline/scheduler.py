"""Which Luigi scheduler a night uses, and what happens when a central one does not answer.

A night runs with Luigi's in-process (local) scheduler unless a central ``luigid`` is named: by
``posemask masks --scheduler-url URL``, by Luigi's own ``--scheduler-host/--scheduler-port/
--scheduler-url`` on ``luigi --module pipeline ...``, or in a config file (``[core]
local_scheduler = false``, ``default-scheduler-url``, ``default-scheduler-host`` or
``default-scheduler-port``). Named, it is used, never silently replaced by a local run.

    names_a_scheduler(argv)          whether the command line or a config file names a central scheduler
    scheduler_params(url)            luigi.build's keyword arguments for a night
    scheduler_address(url)           (host, port) of the central scheduler `url` (or the config's)
    check_reachable(address, timeout)  SchedulerUnreachableError when nothing answers there in time
    SchedulerWatchdog(address, ...)  a thread that interrupts the night when the scheduler stops answering
"""

from __future__ import annotations

import _thread
import socket
import threading
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

import luigi.configuration

# the [core] options that name a central scheduler (Luigi's config names for host, port and url)
SCHEDULER_OPTIONS = ("default-scheduler-url", "default-scheduler-host", "default-scheduler-port")
SCHEDULER_FLAGS = ("--scheduler-url", "--scheduler-host", "--scheduler-port")
DEFAULT_PORT = 8082


class SchedulerUnreachableError(ConnectionError):
    """The central scheduler named for a night does not answer."""


def _config_names_scheduler() -> bool:
    cfg = luigi.configuration.get_config()
    if cfg.has_option("core", "local_scheduler") and not cfg.getboolean("core", "local_scheduler"):
        return True
    return any(cfg.has_option("core", option) for option in SCHEDULER_OPTIONS)


def names_a_scheduler(argv: Sequence[str]) -> bool:
    """Whether `argv` (a luigi command line: ``--scheduler-host h`` or ``--scheduler-host=h``) or a
    config file read so far names a central scheduler."""
    if any(arg.split("=", 1)[0] in SCHEDULER_FLAGS for arg in argv):
        return True
    return _config_names_scheduler()


def scheduler_params(url: str) -> dict[str, object]:
    """luigi.build's scheduler arguments: `url` (posemask's --scheduler-url) when given, else the
    config's central scheduler when it names one, else the local scheduler."""
    if url:
        return {"local_scheduler": False, "scheduler_url": url}
    if _config_names_scheduler():
        return {"local_scheduler": False}
    return {"local_scheduler": True}


def scheduler_address(url: str) -> tuple[str, int]:
    """(host, port) of `url`, or of the config's scheduler (url, else host and port) when empty."""
    cfg = luigi.configuration.get_config()
    url = url or cfg.get("core", "default-scheduler-url", "")
    if url:
        parts = urlsplit(url if "//" in url else f"http://{url}")
        return parts.hostname or "localhost", parts.port or (443 if parts.scheme == "https" else 80)
    return cfg.get("core", "default-scheduler-host", "localhost"), cfg.getint(
        "core", "default-scheduler-port", DEFAULT_PORT
    )


def check_reachable(address: tuple[str, int], timeout: float) -> None:
    """Connect to the scheduler's port; SchedulerUnreachableError naming it when that fails in `timeout` s."""
    try:
        socket.create_connection(address, timeout=timeout).close()
    except OSError as err:
        host, port = address
        raise SchedulerUnreachableError(f"the scheduler at {host}:{port} does not answer ({err})") from err


class SchedulerWatchdog(threading.Thread):
    """Checks every `interval` s that the scheduler still accepts connections; when it has not for
    `grace` s, sets `lost` and interrupts the main thread (KeyboardInterrupt there), so that a night
    whose scheduler died stops within about `grace` + `interval` s, even in the middle of a long
    shard, instead of finishing work nobody will be told of. Use as a context manager."""

    def __init__(self, address: tuple[str, int], grace: float = 15.0, interval: float = 2.0) -> None:
        super().__init__(name="posemask-scheduler-watchdog", daemon=True)
        self.address, self.grace, self.interval = address, grace, interval
        self.lost = False
        self._stop_event = threading.Event()

    def run(self) -> None:
        failing_since: float | None = None
        while not self._stop_event.wait(self.interval):
            try:
                check_reachable(self.address, timeout=self.interval)
                failing_since = None
            except SchedulerUnreachableError:
                now = time.monotonic()
                failing_since = failing_since if failing_since is not None else now
                if now - failing_since >= self.grace:
                    self.lost = True
                    _thread.interrupt_main()
                    return

    def __enter__(self) -> SchedulerWatchdog:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_event.set()
        self.join(timeout=self.interval + 1)
