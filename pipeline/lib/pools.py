"""Ordered parallel maps over a fork pool with bounded memory (at most `window` items in flight)."""

from __future__ import annotations

import multiprocessing as mp
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from tqdm import tqdm

POLL_SECONDS = 0.5


class WorkerDiedError(RuntimeError):
    """A pool worker process died (a crash in native code, the OOM killer) with work in flight."""


def _worker_pids(pool) -> set[int]:
    return {process.pid for process in pool._pool}  # noqa: SLF001 - the only way to see a dead worker


def _result(pool, async_result, pids: set[int], timeout: float | None):
    """async_result.get(), but WorkerDiedError when the pool replaced a worker meanwhile (its item's
    result would never come: Pool.get would wait forever) and TimeoutError past `timeout` seconds."""
    waited = 0.0
    while not async_result.ready():
        async_result.wait(POLL_SECONDS)
        waited += POLL_SECONDS
        if not async_result.ready() and _worker_pids(pool) != pids:
            raise WorkerDiedError(
                "a worker process died with work in flight (a crash in native code, or out of memory); "
                "the failing item is named in the log if it raised, else rerun with [cache] processes = 1 to find it"
            )
        if timeout is not None and waited >= timeout and not async_result.ready():
            raise TimeoutError(f"a pool item took more than {timeout:.0f} s")
    return async_result.get()


def bounded_imap(pool, fn: Callable, items: Iterable, max_in_flight: int, timeout: float | None = None) -> Iterator:
    """``pool.imap(fn, items)`` in order, with at most `max_in_flight` items submitted and not yet consumed.

    Pool.imap reads its whole input eagerly; this keeps memory bounded and, unlike fixed windows,
    keeps every worker busy (the next item is submitted as soon as the oldest result is taken).
    A worker that dies (a segfault in native code, the OOM killer) raises WorkerDiedError instead
    of a wait without end; `timeout` bounds the wait for one result (TimeoutError).
    """
    pids = _worker_pids(pool)
    pending: deque = deque()
    for item in items:
        pending.append(pool.apply_async(fn, (item,)))
        if len(pending) >= max_in_flight:
            yield _result(pool, pending.popleft(), pids, timeout)
    while pending:
        yield _result(pool, pending.popleft(), pids, timeout)


def pooled_map(
    fn: Callable,
    items: Iterable,
    processes: int,
    window: int,
    total: int,
    progress: Callable[[int, int], None],
    desc: str,
) -> Iterator:
    """Ordered map over a fork pool with at most `window` items in flight, a tqdm bar and a progress callback."""
    with mp.get_context("fork").Pool(processes) as pool, tqdm(total=total, desc=desc) as bar:
        for done, result in enumerate(bounded_imap(pool, fn, items, window), start=1):
            yield result
            bar.update(1)
            if done % 8 == 0 or done == total:
                progress(done, total)
