"""pipeline/lib/pools.py: ordered, bounded, and a dead worker is an error, never a wait without end."""

from __future__ import annotations

import faulthandler
import multiprocessing as mp
import os
import signal
import time

import pytest

from pipeline.lib.pools import WorkerDiedError, bounded_imap


def _square_or_crash(x: int) -> int:
    if x == 3:
        faulthandler.disable()  # pytest's handler would print this intended crash as if it were a failure
        os.kill(os.getpid(), signal.SIGSEGV)  # what a native crash (pycocotools on a hostile polygon) does
    return x * x


def _slow(x: int) -> int:
    time.sleep(5)
    return x


def test_results_come_in_order_with_a_bounded_window() -> None:
    with mp.get_context("fork").Pool(2) as pool:
        assert list(bounded_imap(pool, abs, range(-20, 0), 3)) == list(range(20, 0, -1))


def test_a_worker_that_dies_is_an_error_not_a_hang() -> None:
    started = time.perf_counter()
    with mp.get_context("fork").Pool(2) as pool, pytest.raises(WorkerDiedError, match="worker process died"):
        list(bounded_imap(pool, _square_or_crash, range(8), 4))
    assert time.perf_counter() - started < 20


def test_a_result_past_its_timeout_is_an_error() -> None:
    with mp.get_context("fork").Pool(1) as pool, pytest.raises(TimeoutError, match="more than 1 s"):
        list(bounded_imap(pool, _slow, range(2), 2, timeout=1.0))
