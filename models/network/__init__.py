"""The pose-guided U-Net: its settings, the model, its data, its training and its inference
(imports models.sample and models.utils only).

Importing this package loads no torch: the settings (netconfig.py) are here at once, for the Luigi
tasks' defaults; every other name loads its module (and torch) on first use.

    ModelConfig, TrainConfig, HEADS, NORMS, ENCODERS, SCHEDULES    settings (netconfig.py)
    PoseUNet, count_parameters, native_bf16, cpu_has_native_bf16   the model (unet.py; mobilenet.py:
                                                                   its pretrained encoder)
    CacheDataset, InMemoryBatch, normalize_image, prior_to_probability, UINT8_MAX   cache.h5 -> tensors
                                                                   (dataset.py)
    train(model_cfg, train_cfg, train_paths, val_paths, out_dir, init_weights, progress)   training
                                   (training.py; one epoch: epoch.py; optimizer, schedule: schedule.py;
                                   validation: validation.py; RNG streams: seeding.py; torchrun:
                                   distributed.py; the command line: train_dist.py)
    train_step(model, optimizer, batch, use_amp)                   one optimizer step (epoch.py)
    save_model, load_model, read_weights                           model files, checkpoints (checkpoints.py)
    resolve_device, raw_transfer, batch_to_device                  devices and batches (batches.py)
    iter_predictions, predict                                      batched inference (inference.py)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from models.network.netconfig import ENCODERS, HEADS, NORMS, SCHEDULES, ModelConfig, TrainConfig

# name -> the module (of this package) that holds it, imported on first use
_LAZY = {
    "PoseUNet": "unet",
    "count_parameters": "unet",
    "cpu_has_native_bf16": "unet",
    "native_bf16": "unet",
    "CacheDataset": "dataset",
    "InMemoryBatch": "dataset",
    "UINT8_MAX": "dataset",
    "normalize_image": "dataset",
    "prior_to_probability": "dataset",
    "train": "training",
    "check_global_batch": "training",
    "train_step": "epoch",
    "save_model": "checkpoints",
    "load_model": "checkpoints",
    "read_weights": "checkpoints",
    "resolve_device": "batches",
    "raw_transfer": "batches",
    "batch_to_device": "batches",
    "iter_predictions": "inference",
    "predict": "inference",
}

__all__ = [
    "ENCODERS",
    "HEADS",
    "NORMS",
    "SCHEDULES",
    "ModelConfig",
    "TrainConfig",
    "PoseUNet",
    "count_parameters",
    "cpu_has_native_bf16",
    "native_bf16",
    "CacheDataset",
    "InMemoryBatch",
    "UINT8_MAX",
    "normalize_image",
    "prior_to_probability",
    "train",
    "check_global_batch",
    "train_step",
    "save_model",
    "load_model",
    "read_weights",
    "resolve_device",
    "raw_transfer",
    "batch_to_device",
    "iter_predictions",
    "predict",
]

if TYPE_CHECKING:
    from models.network.batches import batch_to_device, raw_transfer, resolve_device
    from models.network.checkpoints import load_model, read_weights, save_model
    from models.network.dataset import (
        UINT8_MAX,
        CacheDataset,
        InMemoryBatch,
        normalize_image,
        prior_to_probability,
    )
    from models.network.epoch import train_step
    from models.network.inference import iter_predictions, predict
    from models.network.training import check_global_batch, train
    from models.network.unet import PoseUNet, count_parameters, cpu_has_native_bf16, native_bf16


def __getattr__(name: str) -> Any:
    """The torch names, from their module on first use (not cached here: a test's monkeypatch of
    the module is what every later use sees)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
