"""Batched inference of a PoseUNet over cache files, in the caches' order.

iter_predictions(model, paths, batch_size, device, num_workers, amp, prior_eps)
    -> (global indices (B,), probabilities (B,H,W)) batch by batch
predict(model, paths, batch_size, device, num_workers) -> (N,H,W) float32: every sample's probability
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from models.network import batches
from models.network.batches import _make_loader, batch_to_device
from models.network.checkpoints import PathLike
from models.network.dataset import CacheDataset
from models.network.unet import PoseUNet


def iter_predictions(
    model: PoseUNet,
    paths: Sequence[PathLike],
    batch_size: int = 32,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    amp: bool = True,
    prior_eps: float = 1e-4,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (global indices (B,) int64, probabilities (B,H,W) float32) batch by batch, in order.

    device: defaults to the model's device; amp: bf16 autocast on CUDA only. On CUDA the cache is
    read raw and normalised on the GPU (raw_transfer): the same inputs as on the CPU.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model = model.to(device).eval()
    use_amp = amp and device.type == "cuda"
    channels_last = True  # faster on CPU too (x1.5-1.8 measured), same probabilities to float rounding
    if channels_last:
        model.to(memory_format=torch.channels_last)
    dataset = CacheDataset(paths, prior_eps=prior_eps, raw=batches.raw_transfer(device))
    loader = _make_loader(dataset, batch_size, False, num_workers, device, None)
    try:
        with torch.inference_mode():
            for batch in loader:
                batch = batch_to_device(batch, device, channels_last, prior_eps)
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
                    probability = model.predict_probability(batch["image"], batch["posemap"], batch["prior"])[:, 0]
                yield batch["index"].cpu().numpy(), probability.float().cpu().numpy()
    finally:
        dataset.close()


def predict(
    model: PoseUNet,
    paths: Sequence[PathLike],
    batch_size: int = 32,
    device: torch.device | str | None = None,
    num_workers: int = 0,
) -> np.ndarray:
    """Probabilities for every sample of `paths` (in order) -> (N,H,W) float32 in [0, 1]."""
    layout = CacheDataset(paths)
    result = np.empty((len(layout), *layout.crop_size), np.float32)
    for indices, probabilities in iter_predictions(model, paths, batch_size, device, num_workers):
        result[indices] = probabilities
    return result
