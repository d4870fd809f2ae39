"""Ordered parallel maps over a fork pool with bounded memory (at most `window` items in flight)."""

from __future__ import annotations

import multiprocessing as mp
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from tqdm import tqdm


def bounded_imap(pool, fn: Callable, items: Iterable, max_in_flight: int) -> Iterator:
    """``pool.imap(fn, items)`` in order, with at most `max_in_flight` items submitted and not yet consumed.

    Pool.imap reads its whole input eagerly; this keeps memory bounded and, unlike fixed windows,
    keeps every worker busy (the next item is submitted as soon as the oldest result is taken).
    """
    pending: deque = deque()
    for item in items:
        pending.append(pool.apply_async(fn, (item,)))
        if len(pending) >= max_in_flight:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


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
