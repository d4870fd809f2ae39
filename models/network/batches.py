"""From cache files to batches on the device: the device, the DataLoader and the raw (uint8) transfer.

    resolve_device(name) -> torch.device     "auto" -> cuda if available else cpu; anything else checked
    raw_transfer(device) -> bool             whether batches travel as uint8 and are normalised on the device
    batch_to_device(batch, device, channels_last, prior_eps)   a DataLoader batch on `device`, as floats
    loader_workers(num_workers, device)      TrainConfig.num_workers resolved (-1: auto)
    _make_loader(dataset, batch_size, shuffle, num_workers, device, generator, sampler, rank)   a run's DataLoader

models.network.training and .inference ask `batches.raw_transfer` (through this module), so that one
switch (a test's monkeypatch) moves both onto the raw path.
"""

from __future__ import annotations

import functools
import os

import torch
from torch.utils.data import DataLoader, Sampler

from models.network.dataset import CacheDataset, normalize_batch
from models.network.seeding import _seed_rank_worker, _seed_worker


def resolve_device(name: str) -> torch.device:
    """ "auto" -> cuda if available else cpu; anything else as torch.device (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return device


def raw_transfer(device: torch.device) -> bool:
    """Whether batches for `device` travel as uint8 (CacheDataset(raw=True)) and are normalised there.

    CUDA only: it saves 3/4 of the host-to-device bytes; on the CPU there is no copy to save, and
    the float path stays as it was.
    """
    return device.type == "cuda"


def batch_to_device(
    batch: dict[str, torch.Tensor], device: torch.device, channels_last: bool, prior_eps: float | None = None
) -> dict:
    """Move a DataLoader batch to `device` (4-D tensors channels-last when asked).

    A raw batch (uint8 image, from CacheDataset(raw=True)) moves as uint8 and is normalised on
    `device` by normalize_batch(batch, prior_eps): then prior_eps (the dataset's) is required. The
    result is the float batch either way: image (B,3,H,W), posemap (B,P,h,w), prior and mask
    (B,1,H,W) float32, index (B,) int64.
    """
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if batch["image"].dtype == torch.uint8:
        if prior_eps is None:
            raise ValueError("batch_to_device: a raw (uint8) batch needs the dataset's prior_eps")
        # the layout change on the uint8 tensors (a quarter of the bytes); normalize_batch keeps it
        moved = {
            key: value.to(device, non_blocking=True).contiguous(memory_format=fmt)
            if value.ndim == 4
            else value.to(device, non_blocking=True)
            for key, value in batch.items()
        }
        return normalize_batch(moved, prior_eps)
    return {
        key: value.to(device, non_blocking=True, memory_format=fmt)
        if value.ndim == 4
        else value.to(device, non_blocking=True)
        for key, value in batch.items()
    }


def loader_workers(num_workers: int, device: torch.device) -> int:
    """TrainConfig.num_workers resolved: -1 (auto) is 0 on the CPU (loader processes would take
    cores from torch's threads) and min(4, cores) on CUDA (loading overlaps the GPU's work)."""
    if num_workers >= 0:
        return num_workers
    return 0 if device.type == "cpu" else min(4, os.cpu_count() or 1)


def _make_loader(
    dataset: CacheDataset,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    device: torch.device,
    generator: torch.Generator | None,
    sampler: Sampler[int] | None = None,
    rank: int = 0,
) -> DataLoader:
    """sampler: this rank's shard under torchrun (then shuffle must be False: the sampler orders);
    rank: offsets the workers' seeds of ranks > 0; num_workers -1: loader_workers' choice."""
    if sampler is not None and shuffle:
        raise ValueError("_make_loader: a sampler orders the samples itself; pass shuffle=False")
    num_workers = loader_workers(num_workers, device)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=_seed_worker if rank == 0 else functools.partial(_seed_rank_worker, rank),
        generator=generator,
        drop_last=False,
    )
