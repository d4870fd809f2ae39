"""Validation during training: IoU per instance, the validation pass over a loader, the history files.

instance_iou(probability, target, threshold) -> (B,)   IoU of (probability > threshold) vs target (both empty: 1)
evaluate(model, loader, device, use_amp, channels_last, threshold, ...) -> (mean loss, mean IoU)
HISTORY_COLUMNS                          the columns of history.csv, one row per epoch
_write_history(rows, csv_path, png_path)   history.csv and the loss / IoU plot (history.png), atomically
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from models.network.batches import batch_to_device
from models.network.checkpoints import _atomic_write, _atomic_write_text
from models.network.unet import PoseUNet

HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "val_iou", "seconds", "samples_per_s", "lr")


def instance_iou(probability: torch.Tensor, target: torch.Tensor, threshold: float) -> torch.Tensor:
    """IoU per instance of (probability > threshold) vs target > 0.5.

    probability, target: (B,...) -> (B,) float32; an instance with both masks empty scores 1.
    """
    pred = (probability > threshold).flatten(1)
    truth = (target > 0.5).flatten(1)
    intersection = (pred & truth).sum(1).float()
    union = (pred | truth).sum(1).float()
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))


@torch.inference_mode()
def evaluate(
    model: PoseUNet,
    loader: DataLoader,
    device: torch.device,
    use_amp: bool,
    channels_last: bool,
    threshold: float,
    show_bar: bool = False,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    prior_eps: float | None = None,
) -> tuple[float, float]:
    """Mean loss and mean per-instance IoU (probability > threshold) over `loader`.

    reduce: sums a (3,) float64 tensor [loss sum, IoU sum, samples] over ranks (each rank's loader
      a shard of the validation set), so that every rank returns the whole set's means.
    prior_eps: the dataset's, needed when it is raw (see batch_to_device).
    """
    model.eval()
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    total_iou = torch.zeros((), device=device, dtype=torch.float64)
    seen = 0
    for batch in tqdm(loader, desc="validate", leave=False, disable=not show_bar, unit="batch"):
        batch = batch_to_device(batch, device, channels_last, prior_eps)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            output = model(batch["image"], batch["posemap"], batch["prior"])
        size = batch["image"].shape[0]
        total_loss += model.loss(output, batch["mask"]).double() * size
        total_iou += instance_iou(model.probability(output), batch["mask"], threshold).double().sum()
        seen += size
    if reduce is not None:
        count = torch.tensor(float(seen), device=device, dtype=torch.float64)
        loss_sum, iou_sum, seen_all = reduce(torch.stack([total_loss, total_iou, count])).tolist()
        return (loss_sum / seen_all, iou_sum / seen_all) if seen_all else (math.nan, math.nan)
    if not seen:
        return math.nan, math.nan
    return total_loss.item() / seen, total_iou.item() / seen


def _write_history(rows: list[dict[str, float]], csv_path: Path, png_path: Path) -> None:
    """history.csv and the loss/IoU plot, both atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: row[key] for key in HISTORY_COLUMNS} for row in rows)
    _atomic_write_text(csv_path, buffer.getvalue())

    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg: no display needed
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in rows]
    figure = Figure(figsize=(9, 3.5))
    FigureCanvasAgg(figure)
    loss_ax, iou_ax = figure.subplots(1, 2)
    loss_ax.plot(epochs, [row["train_loss"] for row in rows], "o-", label="train")
    loss_ax.plot(epochs, [row["val_loss"] for row in rows], "s-", label="validation")
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss")
    loss_ax.legend()
    iou_ax.plot(epochs, [row["val_iou"] for row in rows], "s-", color="tab:green")
    iou_ax.set(xlabel="epoch", ylabel="mean IoU", title="validation IoU")
    for axis in (loss_ax, iou_ax):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.9, wspace=0.3)  # tight_layout is slow
    _atomic_write(png_path, lambda tmp: figure.savefig(tmp, format="png", dpi=100))
