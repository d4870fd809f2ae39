"""Data-parallel training across processes (torchrun) for models/network/training.py. Pure torch, no luigi.

    DistContext                      rank, local_rank, world_size of this process; .active, .is_main
    DistContext.from_env()           read torchrun's WORLD_SIZE / RANK / LOCAL_RANK (world 1 without them)
    rank_device(device, ctx)         cuda -> cuda:LOCAL_RANK under torchrun (and made current); cpu as is
    process_group(ctx, device)       context manager: init torch.distributed (nccl on CUDA, gloo on CPU)
                                     when torchrun runs us, destroy it on exit; nothing for one process
    ShardSampler(size, rank, world_size, generator, shuffle, drop_tail)
                                     one rank's strided share of an epoch's index order
    sum_over_ranks(values, ctx)      elementwise sum over ranks, added in rank order: the same bits everywhere
    from_main(read, ctx)             read() on rank 0, its result (or its failure) on every rank
    sync_buffers_from_main(module, ctx)  rank 0's buffers (BatchNorm statistics) on every rank
    barrier(ctx)                     wait for every rank

The configured batch size is the global one: each of the world_size ranks takes batch / world_size
samples a step, and DDP averages the gradients, so a step is the single-process step on the same
samples (the loss is a per-sample mean) up to float reduction order.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler

T = TypeVar("T")

TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a torchrun job (rank 0 of 1 outside torchrun)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size or self.local_rank < 0:
            raise ValueError(
                f"bad distributed ranks: rank {self.rank}, local {self.local_rank}, world {self.world_size}"
            )

    @property
    def active(self) -> bool:
        """More than one process: collectives, sharding and rank-0-only writes apply."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0, the one that writes files and reports progress."""
        return self.rank == 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DistContext:
        """The torchrun environment; WORLD_SIZE unset or 1 is a single process."""
        env = os.environ if env is None else env
        world_size = int(env.get("WORLD_SIZE") or 1)
        if world_size <= 1:
            return cls()
        missing = [name for name in TORCHRUN_VARIABLES if not env.get(name)]
        if missing:
            raise RuntimeError(f"WORLD_SIZE={world_size} but {missing} are not set: launch the processes with torchrun")
        return cls(rank=int(env["RANK"]), local_rank=int(env["LOCAL_RANK"]), world_size=world_size)


def rank_device(device: torch.device, ctx: DistContext) -> torch.device:
    """The device of this rank: under torchrun a CUDA device is cuda:LOCAL_RANK (any index in the
    configuration is replaced, so one config serves every node), made the current device."""
    if not ctx.active or device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    if ctx.local_rank >= count:
        raise RuntimeError(
            f"LOCAL_RANK {ctx.local_rank} has no GPU: this node shows {count}; use --nproc-per-node <= {count}"
        )
    device = torch.device("cuda", ctx.local_rank)
    torch.cuda.set_device(device)
    return device


@contextlib.contextmanager
def process_group(ctx: DistContext, device: torch.device) -> Iterator[None]:
    """torch.distributed for the duration of the block (env:// rendezvous, as torchrun sets it up).

    A group that already exists (the caller made it) is used and left alone; its size must match.
    """
    if not ctx.active:
        yield
        return
    if dist.is_initialized():
        if dist.get_world_size() != ctx.world_size or dist.get_rank() != ctx.rank:
            raise RuntimeError(
                f"torch.distributed is initialised as rank {dist.get_rank()} of {dist.get_world_size()}, "
                f"but the environment says rank {ctx.rank} of {ctx.world_size}"
            )
        yield
        return
    if device.type == "cuda":
        # device_id binds the NCCL communicator to this rank's GPU at once (no guessing at first use)
        dist.init_process_group("nccl", init_method="env://", device_id=device)
    else:
        dist.init_process_group("gloo", init_method="env://")
    try:
        yield
    finally:
        dist.destroy_process_group()


class ShardSampler(Sampler[int]):
    """Rank `rank`'s share of an epoch's index order: positions rank, rank + W, rank + 2W, ...

    The order is torch.randperm(size, generator) when shuffling (the draw RandomSampler makes from
    the same generator, at the same point: the first batch) and 0..size-1 otherwise. A DataLoader
    over it with batch b = B / W gives rank r at step k positions kB + r, kB + r + W, ...: all ranks
    together hold the single process's k-th batch of B. Reseed the generator each epoch (as
    train() does) for a fresh, reproducible order.
    drop_tail: leave out the last size mod W positions so that every rank has as many samples and
      steps (DDP's backward is a collective: a rank with one step more would wait forever); without
      it (evaluation) ranks differ by at most one sample.
    """

    def __init__(
        self,
        size: int,
        rank: int,
        world_size: int,
        generator: torch.Generator | None = None,
        shuffle: bool = False,
        drop_tail: bool = True,
    ) -> None:
        if shuffle and generator is None:
            raise ValueError("ShardSampler needs a generator to shuffle (every rank must draw the same order)")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside a world of {world_size}")
        self.size, self.rank, self.world_size = size, rank, world_size
        self.generator, self.shuffle, self.drop_tail = generator, shuffle, drop_tail

    def _end(self) -> int:
        return self.size - self.size % self.world_size if self.drop_tail else self.size

    def __iter__(self) -> Iterator[int]:
        # a generator function: nothing is drawn until the first batch, after the DataLoader's own
        # base-seed draw from the same generator, exactly as RandomSampler
        order = torch.randperm(self.size, generator=self.generator) if self.shuffle else torch.arange(self.size)
        yield from order[self.rank : self._end() : self.world_size].tolist()

    def __len__(self) -> int:
        return len(range(self.rank, self._end(), self.world_size))


def sum_over_ranks(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Elementwise sum of `values` (any shape, on the backend's device) over all ranks.

    Gathered and added in rank order on every rank, rather than all_reduce, whose order is the
    backend's: every rank gets the same bits, so decisions taken on them (best epoch, early stop)
    agree.
    """
    if not ctx.active:
        return values
    parts = [torch.empty_like(values) for _ in range(ctx.world_size)]
    dist.all_gather(parts, values.contiguous())
    total = parts[0].clone()
    for part in parts[1:]:
        total += part
    return total


def from_main(read: Callable[[], T], ctx: DistContext) -> T:
    """read() on rank 0 and its result on every rank (pickled through the process group).

    Only rank 0 needs to see the files (nodes need not share a disk). A failure on rank 0 is raised
    there and as RuntimeError on the others, instead of leaving them waiting.
    """
    if not ctx.active:
        return read()
    payload: list[Any] = [None]
    error: BaseException | None = None
    if ctx.is_main:
        try:
            payload = [("ok", read())]
        except Exception as err:  # sent on, so that the other ranks stop too
            error = err
            payload = [("error", f"{type(err).__name__}: {err}")]
    dist.broadcast_object_list(payload, src=0)
    status, value = payload[0]
    if status == "error":
        if error is not None:
            raise error
        raise RuntimeError(f"rank 0 failed: {value}")
    return value


@torch.no_grad()
def sync_buffers_from_main(module: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) into every rank's `module`.

    DDP broadcasts them at the start of each forward, so after the last step each rank holds its
    own update; evaluating on rank 0's makes every shard use the statistics rank 0 saves.
    """
    if not ctx.active:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def barrier(ctx: DistContext) -> None:
    """Wait until every rank is here (no-op for one process)."""
    if ctx.active:
        dist.barrier()
