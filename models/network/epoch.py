"""One epoch of training: the optimizer steps, the validation when it is due, and its record.

    train_step(model, optimizer, batch, use_amp, forward) -> loss   one optimizer step on a batch on the device
    _run_epoch(model, loader, optimizer, ...) -> (mean loss, samples)   the steps of one epoch
    _train_epoch(run, model, net, optimizer, epoch, ...)   one epoch of models.network.training's loop: train,
                                          validate, record (history, best epoch, files), notify
    _Run, _Standing                       what a rank's run shares, and where it stands (best epoch, history)

Private to models.network: models.network.training runs the loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from models.network.batches import batch_to_device
from models.network.checkpoints import _save_checkpoint, save_model
from models.network.distributed import DistContext, barrier, sync_buffers_from_main
from models.network.netconfig import TrainConfig
from models.network.schedule import learning_rate
from models.network.seeding import _seed_rank_epoch
from models.network.unet import ModelConfig, PoseUNet
from models.network.validation import _write_history, evaluate

ProgressFn = Callable[[int, int, str], None]
Reduce = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class _Run:
    """What every part of one rank's run shares (set up by _train_ranks)."""

    model_cfg: ModelConfig
    train_cfg: TrainConfig
    out_dir: Path
    ctx: DistContext
    device: torch.device
    use_amp: bool
    channels_last: bool
    notify: ProgressFn
    reduce: Reduce | None

    @property
    def last_path(self) -> Path:
        return self.out_dir / "checkpoints" / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.out_dir / "checkpoints" / "best.pt"


@dataclass
class _Standing:
    """Where training stands: restored from the checkpoint (_restore_weights), updated each epoch."""

    start_epoch: int
    best_iou: float
    best_epoch: int
    history: list[dict]


def train_step(
    model: PoseUNet,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    use_amp: bool,
    forward: nn.Module | None = None,
) -> torch.Tensor:
    """One optimizer step on a batch already on the model's device; returns the (detached) loss.

    forward: what runs the forward pass when it is not `model` itself (its DistributedDataParallel
      wrapper, whose backward averages the gradients over ranks); the loss is always model.loss.
    """
    device_type = batch["image"].device.type
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=use_amp):
        net = forward if forward is not None else model
        output = net(batch["image"], batch["posemap"], batch["prior"])
    loss = model.loss(output, batch["mask"])
    loss.backward()
    optimizer.step()
    return loss.detach()


def _run_epoch(
    model: PoseUNet,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    use_amp: bool,
    channels_last: bool,
    desc: str,
    show_bar: bool,
    lr_at: Callable[[float], float] | None = None,
    forward: nn.Module | None = None,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    prior_eps: float | None = None,
) -> tuple[float, int]:
    """Train one epoch -> (mean loss per sample, samples seen); lr_at(fraction of the epoch) sets
    the learning rate before each step. forward: see train_step. reduce: sums a (2,) float64
    tensor [loss sum, samples] over ranks, so that both numbers are the whole job's. prior_eps:
    the dataset's, needed when it is raw (see batch_to_device)."""
    (forward if forward is not None else model).train()
    total_loss = torch.zeros((), device=device)
    seen = 0
    steps = max(len(loader), 1)
    with tqdm(loader, desc=desc, leave=False, disable=not show_bar, unit="batch") as bar:
        for step, batch in enumerate(bar):
            if lr_at is not None:
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step / steps) * group.get("lr_scale", 1.0)
            batch = batch_to_device(batch, device, channels_last, prior_eps)
            size = batch["image"].shape[0]
            total_loss += train_step(model, optimizer, batch, use_amp, forward) * size
            seen += size
    if reduce is not None:
        sums = reduce(torch.stack([total_loss.double(), torch.tensor(float(seen), device=device, dtype=torch.float64)]))
        loss_sum, seen = sums[0].item(), int(sums[1].item())
        return (loss_sum / seen if seen else math.nan), seen
    return (total_loss.item() / seen if seen else math.nan), seen


def _train_epoch(
    run: _Run,
    model: PoseUNet,
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    shuffle_generator: torch.Generator,
    train_loader: DataLoader,
    val_loader: DataLoader | None,
    standing: _Standing,
) -> None:
    """Epoch `epoch` (0-based): train, validate when it is due, record it (history, best, files), notify."""
    train_cfg, ctx, total = run.train_cfg, run.ctx, run.train_cfg.epochs
    started = time.perf_counter()
    # Shuffle order (and worker seeds) depend only on (seed, epoch): resume-safe.
    shuffle_generator.manual_seed(train_cfg.seed * 100_003 + epoch)
    if ctx.active:
        _seed_rank_epoch(train_cfg.seed, epoch, ctx.rank)
    train_loss, seen = _run_epoch(
        model,
        train_loader,
        optimizer,
        run.device,
        run.use_amp,
        run.channels_last,
        f"epoch {epoch + 1}/{total}",
        train_cfg.progress_bar and ctx.is_main,
        lambda fraction, epoch=epoch: learning_rate(train_cfg, epoch + fraction),
        forward=net,
        reduce=run.reduce,
        prior_eps=train_cfg.prior_eps,
    )
    train_seconds = time.perf_counter() - started
    # every rank now holds what rank 0 validates and saves (BatchNorm statistics included)
    sync_buffers_from_main(model, ctx)
    val_loss, val_iou = _validate(run, model, epoch, val_loader)
    row = {
        "epoch": epoch + 1,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "val_iou": val_iou,
        "seconds": time.perf_counter() - started,
        "samples_per_s": seen / train_seconds if train_seconds > 0 else math.nan,
        "lr": float(optimizer.param_groups[0]["lr"]),
    }
    _record_epoch(run, model, optimizer, row, val_loader is not None, standing)
    run.notify(
        epoch + 1,
        total,
        f"epoch {epoch + 1}/{total} train_loss={train_loss:.4f} "
        f"val_loss={val_loss:.4f} val_iou={val_iou:.4f} "
        f"({row['samples_per_s']:.1f} samples/s)",
    )


def _validate(run: _Run, model: PoseUNet, epoch: int, val_loader: DataLoader | None) -> tuple[float, float]:
    """(validation loss, IoU) after epoch `epoch` when validation is due (every val_every epochs and
    after the last one), else (nan, nan)."""
    train_cfg = run.train_cfg
    is_last = epoch + 1 == train_cfg.epochs
    if val_loader is None or not ((epoch + 1) % train_cfg.val_every == 0 or is_last):
        return math.nan, math.nan
    # the bare model: DDP's forward would sync buffers, a collective that shards of unequal length cannot match
    return evaluate(
        model,
        val_loader,
        run.device,
        run.use_amp,
        run.channels_last,
        train_cfg.iou_threshold,
        train_cfg.progress_bar and run.ctx.is_main,
        run.reduce,
        prior_eps=train_cfg.prior_eps,
    )


def _record_epoch(
    run: _Run, model: PoseUNet, optimizer: torch.optim.Optimizer, row: dict, validates: bool, standing: _Standing
) -> None:
    """Append the epoch's row, update the best epoch; rank 0 writes best.pt (when it improved),
    last.pt and the history files while the other ranks wait."""
    standing.history.append(row)
    epoch, val_iou = row["epoch"], row["val_iou"]
    # Without validation every epoch counts as "best" so that best.pt is the latest model.
    improved = not validates or (not math.isnan(val_iou) and val_iou > standing.best_iou)
    if improved:
        if validates:
            standing.best_iou = val_iou
        standing.best_epoch = epoch
    if run.ctx.is_main:
        if improved:
            save_model(run.best_path, model, run.model_cfg, {"epoch": epoch, "val_iou": val_iou})
        _save_checkpoint(
            run.last_path,
            epoch,
            model,
            optimizer,
            standing.best_iou,
            standing.best_epoch,
            standing.history,
            run.model_cfg,
            run.train_cfg,
        )
        _write_history(standing.history, run.out_dir / "history.csv", run.out_dir / "history.png")
    barrier(run.ctx)  # the others wait while rank 0 writes
