"""Training a PoseUNet: the training loop, resumable, in one process or as one rank under torchrun.

Pure torch (no luigi): the TrainModel / FineTune tasks call `train`. The other parts of a run:
models.network.epoch (one epoch: steps, validation, record), .checkpoints (model files,
checkpoints, resume), .schedule (optimizer, learning rate, early stop), .validation (validation
IoU, history files), .batches (device, loaders), .seeding (RNG streams); .inference holds
PredictMasks' batched predictions.

    train(model_cfg, train_cfg, train_paths, val_paths, out_dir, init_weights, progress) -> dict
                                   train (or resume) into out_dir; see its docstring for the result
    check_global_batch(batch_size, world_size) -> int               the batch of one rank
    ProgressFn                     progress(epochs_done, total_epochs, message)

Every file is written to a temporary file in the target's directory and renamed into place, and
everything saved holds tensors and plain types only, so that it loads with
`torch.load(..., weights_only=True)`.

Layout of a training output folder `out_dir`:
    checkpoints/last.pt   full state after the latest epoch (resume point)
    checkpoints/best.pt   model weights of the best validation IoU (load_model format)
    history.csv           one row per epoch
    history.png           loss / IoU curves

Under torchrun (WORLD_SIZE > 1) `train` runs data-parallel (models/network/distributed.py): one
process per rank, DistributedDataParallel, each rank a strided shard of the cache and
batch_size / WORLD_SIZE samples a step (batch_size is the global batch), validation sums gathered
from all ranks; only rank 0 reads and writes out_dir. models/network/train_dist.py is the command
line for it.

On CUDA the caches are read raw (`raw_transfer`): batches cross PCIe as uint8 (a quarter of the
float32 bytes, from pinned memory, non-blocking) and `batch_to_device` normalises them on the GPU
to exactly the floats of the CPU path (models/network/dataset.py normalize_batch). On the CPU the
float path is kept as it was. The pose map and prior are the cache's on both (see
models/network/dataset.py).
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from models.network import batches
from models.network.batches import _make_loader, resolve_device
from models.network.checkpoints import CHECKPOINT_FORMAT, PathLike, _load, _read_start, _restore_weights, read_weights
from models.network.dataset import CacheDataset
from models.network.distributed import (
    DistContext,
    ShardSampler,
    from_main,
    process_group,
    rank_device,
    sum_over_ranks,
)
from models.network.epoch import ProgressFn, _Run, _Standing, _train_epoch
from models.network.netconfig import TrainConfig
from models.network.schedule import make_optimizer, stopped_early
from models.network.seeding import _set_rng_state
from models.network.unet import ModelConfig, PoseUNet, cpu_has_native_bf16
from models.sample import AUGMENTATIONS


def check_global_batch(batch_size: int, world_size: int) -> int:
    """The batch of one rank -> batch_size / world_size; ValueError unless world_size divides batch_size."""
    if batch_size % world_size:
        raise ValueError(
            f"TrainConfig.batch_size {batch_size} is the global batch and must be divisible by the number "
            f"of processes (WORLD_SIZE {world_size}): each rank takes batch_size / WORLD_SIZE samples a step"
        )
    return batch_size // world_size


def _prepare_device(
    train_cfg: TrainConfig, ctx: DistContext | None = None, norm: str = "batch"
) -> tuple[torch.device, bool, bool]:
    """(device, bf16 autocast, channels_last) for a run; cudnn autotuning and torch threads set.

    Under torchrun (ctx active) a CUDA device is cuda:LOCAL_RANK. On the CPU, bf16 autocast needs
    TrainConfig.cpu_bf16 and a CPU with native bf16 (cpu_has_native_bf16). A GroupNorm net under
    CPU bf16 trains in the contiguous format: channels-last GroupNorm in bf16 measured slower
    (x1.7 against x2.0 over float32 NCHW on this CPU; BatchNorm: x2.8 channels-last, x2.1 NCHW).
    """
    device = resolve_device(train_cfg.device)
    if ctx is not None:
        device = rank_device(device, ctx)
    on_cuda = device.type == "cuda"
    if on_cuda:
        torch.backends.cudnn.benchmark = True
    if train_cfg.num_threads:
        torch.set_num_threads(train_cfg.num_threads)
    cpu_bf16 = not on_cuda and train_cfg.cpu_bf16 and cpu_has_native_bf16()
    channels_last = train_cfg.channels_last and not (cpu_bf16 and norm == "group")
    return device, (train_cfg.amp and on_cuda) or cpu_bf16, channels_last


def train(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    train_paths: Sequence[PathLike],
    val_paths: Sequence[PathLike] | None,
    out_dir: PathLike,
    init_weights: PathLike | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Train a PoseUNet on cache.h5 files; resumes from out_dir/checkpoints/last.pt when it exists.

    init_weights: a model file or checkpoint to start from (fine-tuning); ignored when resuming
      (the checkpoint already holds the weights). The architecture must match model_cfg.
    progress: called as progress(epochs_done, total_epochs, message) at start and after each epoch.
    Seeds the global torch/numpy/python RNGs from train_cfg.seed (and sets torch's thread count when
    train_cfg.num_threads > 0).
    Under torchrun (WORLD_SIZE > 1, see the module docstring) every rank calls this: it joins the
    process group (nccl on CUDA, gloo on CPU), and only rank 0 reads out_dir / init_weights, writes
    files and calls `progress`; every rank returns the same history and weights.
    Returns {"model": PoseUNet (best validation weights, or last without validation, eval mode),
             "history": rows, "best_val_iou", "best_epoch", "epochs_completed", "resumed_from_epoch",
             "device", "last_checkpoint", "best_checkpoint", "rank", "world_size",
             "last_weights_sum" (sum of this rank's weights after its last epoch: the ranks' agree)}.
    """
    ctx = DistContext.from_env()
    check_global_batch(train_cfg.batch_size, ctx.world_size)
    device, use_amp, channels_last = _prepare_device(train_cfg, ctx, model_cfg.norm)
    with process_group(ctx, device):
        return _train_ranks(
            model_cfg,
            train_cfg,
            train_paths,
            val_paths,
            Path(out_dir),
            init_weights,
            progress,
            ctx,
            device,
            use_amp,
            channels_last,
        )


def _train_ranks(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    train_paths: Sequence[PathLike],
    val_paths: Sequence[PathLike] | None,
    out_dir: Path,
    init_weights: PathLike | None,
    progress: ProgressFn | None,
    ctx: DistContext,
    device: torch.device,
    use_amp: bool,
    channels_last: bool,
) -> dict[str, Any]:
    """train()'s body, in one process or in one rank of a process group that is set up."""
    notify = (progress if ctx.is_main else None) or (lambda done, total, message: None)
    reduce = functools.partial(sum_over_ranks, ctx=ctx) if ctx.active else None
    run = _Run(model_cfg, train_cfg, out_dir, ctx, device, use_amp, channels_last, notify, reduce)
    model, checkpoint, standing = _start_model(run, init_weights)
    net, optimizer = _prepare_training(run, model, checkpoint)

    raw = batches.raw_transfer(device)
    train_set = CacheDataset(
        train_paths, augment=AUGMENTATIONS[train_cfg.augment], prior_eps=train_cfg.prior_eps, raw=raw
    )
    val_set: CacheDataset | None = None
    try:  # the h5 handles are closed on errors (and KeyboardInterrupt) too
        val_set = CacheDataset(val_paths, prior_eps=train_cfg.prior_eps, raw=raw) if val_paths else None
        shuffle_generator, train_loader, val_loader = _make_loaders(run, train_set, val_set)
        start = standing.start_epoch
        notify(start, train_cfg.epochs, f"resuming after epoch {start}" if checkpoint else "starting")
        for epoch in range(start, train_cfg.epochs):
            # history and best_epoch are the same on every rank (gathered sums): all stop together
            if stopped_early(standing.history, standing.best_epoch, train_cfg.patience):
                break
            _train_epoch(run, model, net, optimizer, epoch, shuffle_generator, train_loader, val_loader, standing)

        # this rank's own weights before rank 0's best replace them: equal on all ranks unless they drifted apart
        last_weights_sum = float(sum(value.double().sum().item() for value in model.state_dict().values()))
        _load_best(run, model)
        model.eval()
    finally:
        train_set.close()
        if val_set is not None:
            val_set.close()
    return _result(run, model, standing, checkpoint, last_weights_sum)


def _start_model(run: _Run, init_weights: PathLike | None) -> tuple[PoseUNet, dict | None, _Standing]:
    """Seed the global RNGs, build the model and restore it -> (model, resume checkpoint or None, standing)."""
    train_cfg = run.train_cfg
    random.seed(train_cfg.seed)
    np.random.seed(train_cfg.seed)
    torch.manual_seed(train_cfg.seed)
    model = PoseUNet(run.model_cfg)
    initial: PathLike | dict[str, torch.Tensor] | None = init_weights
    if run.ctx.active:  # rank 0 reads, the others get its copy: only rank 0 needs to see out_dir
        checkpoint, initial = from_main(lambda: _read_start(run.last_path, init_weights), run.ctx)
    else:
        checkpoint = _load(run.last_path, CHECKPOINT_FORMAT) if run.last_path.exists() else None
    restored = _restore_weights(model, run.model_cfg, checkpoint, run.last_path, initial)
    return model, checkpoint, _Standing(*restored)


def _prepare_training(run: _Run, model: PoseUNet, checkpoint: dict | None) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The model on its device, the module that runs the training forward (DDP, compiled) and the
    optimizer; a resumed run gets its optimizer and RNG states back -> (net, optimizer)."""
    model.to(run.device)
    if run.channels_last:
        model.to(memory_format=torch.channels_last)
    # All ranks built and restored the same weights; DDP broadcasts rank 0's at construction anyway.
    net: nn.Module = (
        DistributedDataParallel(model, device_ids=[run.device.index] if run.device.type == "cuda" else None)
        if run.ctx.active
        else model
    )
    if run.train_cfg.compile:  # the training forward only: weights, checkpoints and validation use `model`
        net = torch.compile(net)
    optimizer = make_optimizer(model, run.train_cfg)
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer_state"])
        _set_rng_state(checkpoint["rng"])
    return net, optimizer


def _make_loaders(
    run: _Run, train_set: CacheDataset, val_set: CacheDataset | None
) -> tuple[torch.Generator, DataLoader, DataLoader | None]:
    """(the shuffle generator, the training loader, the validation loader or None) of this rank."""
    train_cfg, ctx, device = run.train_cfg, run.ctx, run.device
    shuffle_generator = torch.Generator()
    if not ctx.active:
        train_loader = _make_loader(
            train_set, train_cfg.batch_size, True, train_cfg.num_workers, device, shuffle_generator
        )
        val_loader = (
            _make_loader(val_set, train_cfg.batch_size, False, train_cfg.num_workers, device, None)
            if val_set is not None
            else None
        )
        return shuffle_generator, train_loader, val_loader
    # One shared generator for the DataLoader's base seed and the shard order, as in one
    # process: together the ranks' k-th batches are the single process's k-th batch.
    rank_batch = check_global_batch(train_cfg.batch_size, ctx.world_size)
    train_sampler = ShardSampler(len(train_set), ctx.rank, ctx.world_size, shuffle_generator, shuffle=True)
    train_loader = _make_loader(
        train_set, rank_batch, False, train_cfg.num_workers, device, shuffle_generator, train_sampler, ctx.rank
    )
    val_loader = (
        _make_loader(
            val_set,
            rank_batch,
            False,
            train_cfg.num_workers,
            device,
            None,
            ShardSampler(len(val_set), ctx.rank, ctx.world_size, drop_tail=False),
            ctx.rank,
        )
        if val_set is not None
        else None
    )
    return shuffle_generator, train_loader, val_loader


def _load_best(run: _Run, model: PoseUNet) -> None:
    """The best epoch's weights (rank 0's best.pt, when there is one) into `model` on every rank."""
    if run.ctx.active:
        best_state = from_main(lambda: read_weights(run.best_path) if run.best_path.exists() else None, run.ctx)
        if best_state is not None:
            model.load_state_dict(best_state)
    elif run.best_path.exists():
        model.load_state_dict(read_weights(run.best_path))


def _result(
    run: _Run, model: PoseUNet, standing: _Standing, checkpoint: dict | None, last_weights_sum: float
) -> dict[str, Any]:
    """train()'s result (see its docstring)."""
    history, best_iou, best_epoch = standing.history, standing.best_iou, standing.best_epoch
    return {
        "model": model,
        "history": history,
        "best_val_iou": best_iou if math.isfinite(best_iou) else math.nan,
        "best_epoch": best_epoch,
        "epochs_completed": int(history[-1]["epoch"]) if history else 0,
        # stopped_early is False without history, so history[-1] exists when it is True
        "stopped_early": stopped_early(history, best_epoch, run.train_cfg.patience)
        and history[-1]["epoch"] < run.train_cfg.epochs,
        "resumed_from_epoch": standing.start_epoch if checkpoint is not None else None,
        "device": str(run.device),
        "last_checkpoint": str(run.last_path),
        "best_checkpoint": str(run.best_path),
        "rank": run.ctx.rank,
        "world_size": run.ctx.world_size,
        "last_weights_sum": last_weights_sum,
    }
