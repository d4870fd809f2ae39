"""pred.h5: one method's per-sample probabilities, in the cache's sample order.

prob         (N, S, S) float16   foreground probability of sample i (one sample per chunk)
instance_id  (N,) int64          the cache's instance ids, same order
attrs        method, device, ms_per_image (wall time of the stage / N), and per method extras
             (crf_params for a refined prediction)

write_predictions(target, probs, ids, S, attrs)   stream probabilities in, atomically
stream_predictions(path)                           (S, S) float32 arrays, one at a time
prediction_attrs(path)                             the attrs as a dict
timed(items, attrs, count)                         pass items through, then set attrs["ms_per_image"]
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import h5py
import numpy as np

from pipeline.lib.files import atomic_path


def write_predictions(
    target: Path, probs: Iterable[np.ndarray], instance_ids: np.ndarray, crop_size: int, attrs: dict
) -> None:
    """Stream (S,S) probabilities into pred.h5 atomically (one sample per chunk; an empty split is fine)."""
    with atomic_path(target) as tmp, h5py.File(tmp, "w") as h5:
        chunks = (1, crop_size, crop_size) if len(instance_ids) else None  # HDF5 refuses chunks of an empty set
        ds = h5.create_dataset("prob", (len(instance_ids), crop_size, crop_size), np.float16, chunks=chunks)
        written = 0
        for i, prob in enumerate(probs):
            ds[i] = prob
            written = i + 1
        if written != len(instance_ids):
            raise RuntimeError(f"{written} predictions for {len(instance_ids)} samples")
        h5.create_dataset("instance_id", data=np.asarray(instance_ids, np.int64))
        for key, value in attrs.items():
            h5.attrs[key] = value


def prediction_attrs(path: str | Path) -> dict:
    """The attributes of a pred.h5 (method, ms_per_image, device, ...)."""
    with h5py.File(path, "r") as h5:
        return dict(h5.attrs)


def stream_predictions(path: str | Path, stop: int | None = None) -> Iterator[np.ndarray]:
    """(S,S) float32 probabilities of a pred.h5, one sample at a time (memory stays flat)."""
    with h5py.File(path, "r") as h5:
        prob = h5["prob"]
        for i in range(prob.shape[0] if stop is None else min(stop, prob.shape[0])):
            yield prob[i].astype(np.float32)


def timed(items: Iterable[np.ndarray], attrs: dict, count: int, base_ms: float = 0.0) -> Iterator[np.ndarray]:
    """Pass items through; when exhausted, set attrs["ms_per_image"] (write_predictions stores attrs last)."""
    start = time.perf_counter()
    yield from items
    attrs["ms_per_image"] = base_ms + 1000 * (time.perf_counter() - start) / max(count, 1)


def predictions_at(path: str | Path, indices: Iterable[int]) -> dict[int, np.ndarray]:
    """(S, S) float32 probabilities of the samples at `indices`, by index."""
    with h5py.File(path, "r") as h5:
        return {int(i): h5["prob"][int(i)].astype(np.float32) for i in indices}
