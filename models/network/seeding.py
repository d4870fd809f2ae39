"""Seeds and random-number states of a training run: resumable, and a stream of its own per rank under torchrun.

    RANK_SEED_STRIDE                       under torchrun, rank r's augmentation seeds are offset by r x this
    _seed_worker(worker_id)                DataLoader worker_init_fn: numpy/python seeds from the worker's torch seed
    _seed_rank_worker(rank, worker_id)     the same for a rank > 0, offset so that the ranks augment apart
    _seed_rank_epoch(seed, epoch, rank)    global RNGs from (seed, epoch, rank) at each epoch under torchrun
    _rng_state() / _set_rng_state(state)   every global RNG state as tensors and plain types (a checkpoint's "rng")

The names are private to models.network: batches, checkpoints and training use them.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

RANK_SEED_STRIDE = 1_000_003  # under torchrun, rank r's augmentation seeds are offset by r x this


def _seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: derive numpy/python seeds from the worker's torch seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _seed_rank_worker(rank: int, worker_id: int) -> None:
    """worker_init_fn of rank > 0 under torchrun. Every rank's DataLoader draws the same base seed
    from the shared shuffle generator, so without this offset all ranks would augment alike."""
    torch.manual_seed((torch.initial_seed() + rank * RANK_SEED_STRIDE) % 2**63)
    _seed_worker(worker_id)


def _seed_rank_epoch(seed: int, epoch: int, rank: int) -> None:
    """Under torchrun: global RNGs (augmentation without workers) from (seed, epoch, rank), so each
    rank draws its own stream and a resumed run draws what the uninterrupted one did (the
    checkpoint holds rank 0's RNG state only)."""
    value = (seed * 100_003 + epoch + rank * RANK_SEED_STRIDE) % 2**32
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def _rng_state() -> dict[str, Any]:
    """All global RNG states as tensors and plain types (weights_only-loadable)."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "python": {"version": int(py_version), "internal": [int(v) for v in py_internal], "gauss_next": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of _rng_state."""
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state(
        (npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["cached_gaussian"])
    )
    pyst = state["python"]
    random.setstate((pyst["version"], tuple(pyst["internal"]), pyst["gauss_next"]))
    cuda_states = state.get("cuda")
    if cuda_states is not None and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)
