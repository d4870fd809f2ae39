"""The optimizer and the learning-rate schedule of a training run, and when it stops early.

learning_rate(cfg, epoch) -> float     warm-up, then constant or cosine: a function of the (fractional) epoch
LR_FLOOR                               warm-up starts and cosine ends at lr x LR_FLOOR
make_optimizer(model, train_cfg)       Adam: the decoder's group, then the pretrained parts at lr x encoder_lr_scale
stopped_early(history, best_epoch, patience) -> bool   `patience` epochs after the best one without a better IoU
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from models.network.netconfig import TrainConfig
from models.network.unet import PoseUNet

LR_FLOOR = 0.01  # warm-up starts and cosine ends at lr x LR_FLOOR


def learning_rate(cfg: TrainConfig, epoch: float) -> float:
    """The learning rate at (fractional) `epoch` in [0, cfg.epochs): warm-up, then constant or cosine.

    A function of the position alone, so a resumed run follows the same curve.
    """
    if epoch < cfg.warmup_epochs:
        return cfg.lr * (LR_FLOOR + (1 - LR_FLOOR) * epoch / cfg.warmup_epochs)
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(cfg.epochs - cfg.warmup_epochs, 1e-9)
    progress = min(max((epoch - cfg.warmup_epochs) / span, 0.0), 1.0)
    return cfg.lr * (LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * progress)))


def stopped_early(history: Sequence[dict], best_epoch: int, patience: int) -> bool:
    """Whether training should stop: `patience` epochs after the best one without a better IoU."""
    return bool(patience) and bool(history) and int(history[-1]["epoch"]) - best_epoch >= patience


def make_optimizer(model: PoseUNet, train_cfg: TrainConfig) -> torch.optim.Adam:
    """Adam over the trainable parameters: the decoder's group first (its lr is the one logged),
    then the pretrained parts at lr x encoder_lr_scale (a group's "lr_scale", which every lr
    change keeps)."""
    pretrained = {id(p) for p in model.pretrained_parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in trainable if id(p) not in pretrained], "lr_scale": 1.0}]
    encoder = [p for p in trainable if id(p) in pretrained]
    if encoder:
        groups.append({"params": encoder, "lr_scale": train_cfg.encoder_lr_scale})
    for group in groups:
        group["lr"] = train_cfg.lr * group["lr_scale"]
    return torch.optim.Adam(groups, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
