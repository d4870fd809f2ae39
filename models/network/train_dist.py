"""Train a PoseUNet from cache.h5 files into a folder, in one process or one per GPU under torchrun.

    python -m models.network.train_dist --cache train.h5 [--cache more.h5] [--val-cache val.h5] --out DIR
        [--epochs 30 ...]
    torchrun --standalone --nproc-per-node 8 -m models.network.train_dist --cache ... --out DIR --batch-size 64

    main(argv=None) -> int               the command line; returns the exit status (2: bad options)
    build_parser() -> ArgumentParser     --cache/--val-cache/--out/--init-weights/--select, and one
                                         --option per TrainConfig and ModelConfig field
    configs_from_args(args) -> (ModelConfig, TrainConfig)
    cache_pose_channels(path) -> int     pose map channels of a cache (1 or 14): ModelConfig.pose_channels

No luigi: every rank runs the same command and models.network.train (which reads torchrun's
environment; --batch-size is the global batch). Rank 0 writes, atomically, models/network/training.py's
layout (DIR/checkpoints/{last,best}.pt, DIR/history.{csv,png}) plus
    DIR/model.pt             the --select weights (last or best epoch), load_model format
    DIR/train_summary.json   configs, caches, history, best epoch, world size
A rerun with the same DIR resumes from DIR/checkpoints/last.pt. Every rank prints one line
``RANK_RESULT {json}`` at the end: what it saw (history, best epoch, sums of its weights after the
last epoch and of the best ones it returns); the ranks' lines agree.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py

from models.network.checkpoints import read_weights, save_model
from models.network.distributed import DistContext
from models.network.netconfig import TrainConfig
from models.network.training import check_global_batch, train
from models.network.unet import ModelConfig, PoseUNet
from models.utils import atomic_path

RESULT_PREFIX = "RANK_RESULT "
# set by the command's own options, not by a field flag
DERIVED_FIELDS = {"pose_channels"}


def cache_pose_channels(path: str | Path) -> int:
    """Pose map channels of a cache.h5: 1 for (N,h,w) maps, P for (N,P,h,w)."""
    with h5py.File(path, "r") as h5:
        shape = h5["posemap"].shape
    return 1 if len(shape) == 3 else int(shape[1])


def _add_field_options(parser: argparse.ArgumentParser, cls: type, title: str) -> None:
    group = parser.add_argument_group(title)
    for field in dataclasses.fields(cls):
        if field.name in DERIVED_FIELDS:
            continue
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        if isinstance(default, bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=f"default {default}")
        else:
            group.add_argument(flag, type=type(default), default=None, metavar=type(default).__name__.upper())


def build_parser() -> argparse.ArgumentParser:
    """The command line; unset field options keep the dataclass defaults."""
    parser = argparse.ArgumentParser(
        prog="python -m models.network.train_dist",
        description="Train PoseUNet from cache.h5 files; run it under torchrun for several processes/GPUs.",
    )
    parser.add_argument("--cache", action="append", required=True, type=Path, help="training cache.h5 (repeatable)")
    parser.add_argument("--val-cache", action="append", default=[], type=Path, help="validation cache.h5 (repeatable)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (resumed when it has a checkpoint)")
    parser.add_argument("--init-weights", type=Path, default=None, help="model file or checkpoint to start from")
    parser.add_argument(
        "--select", choices=["last", "best"], default="last", help="weights written to OUT/model.pt (as TrainModel)"
    )
    parser.add_argument(
        "--pose-channels", type=int, default=None, help="ModelConfig.pose_channels (default: the cache's pose map)"
    )
    _add_field_options(parser, TrainConfig, "TrainConfig (models.network); --batch-size is the global batch")
    _add_field_options(parser, ModelConfig, "ModelConfig (the architecture)")
    return parser


def _chosen(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)
        if f.name not in DERIVED_FIELDS and getattr(args, f.name) is not None
    }


def configs_from_args(args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig]:
    """(ModelConfig, TrainConfig) from parsed options; pose_channels from the first cache unless given."""
    pose_channels = args.pose_channels if args.pose_channels is not None else cache_pose_channels(args.cache[0])
    model_cfg = ModelConfig(**_chosen(args, ModelConfig), pose_channels=pose_channels)
    return model_cfg, TrainConfig(**_chosen(args, TrainConfig))


def _finite_or_none(value: float) -> float | None:
    return value if isinstance(value, float) and math.isfinite(value) else None


def _write_outputs(
    args: argparse.Namespace, model_cfg: ModelConfig, train_cfg: TrainConfig, result: dict[str, Any]
) -> None:
    """Rank 0: OUT/model.pt (the --select weights) and OUT/train_summary.json, atomically."""
    selected = args.select
    if selected == "best" and not Path(result["best_checkpoint"]).is_file():
        selected = "last"  # no epoch had a finite validation IoU: nothing to call best
    chosen = result["best_checkpoint"] if selected == "best" else result["last_checkpoint"]
    model = PoseUNet(model_cfg)
    model.load_state_dict(read_weights(Path(chosen)))
    meta = {
        "task": "models.train_dist",  # the command users run (models/train_dist.py)
        "selected": selected,
        "world_size": result["world_size"],
        "epochs_completed": result["epochs_completed"],
        "stopped_early": result["stopped_early"],
        "best_val_iou": _finite_or_none(result["best_val_iou"]),
        "best_epoch": result["best_epoch"],
    }
    save_model(args.out / "model.pt", model, model_cfg, meta)
    summary = {
        **meta,
        "model_config": model_cfg.to_dict(),
        "train_config": train_cfg.to_dict(),
        "resumed_from_epoch": result["resumed_from_epoch"],
        "device_rank0": result["device"],
        "train_caches": [str(p) for p in args.cache],
        "val_caches": [str(p) for p in args.val_cache],
        "history": [{k: _finite_or_none(float(v)) for k, v in row.items()} for row in result["history"]],
    }
    with atomic_path(args.out / "train_summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")


def _rank_result(result: dict[str, Any]) -> dict[str, Any]:
    """What this rank saw, to compare ranks (timings left out: they differ)."""
    weights = result["model"].state_dict()
    return {
        "rank": result["rank"],
        "world_size": result["world_size"],
        "device": result["device"],
        "resumed_from_epoch": result["resumed_from_epoch"],
        "epochs_completed": result["epochs_completed"],
        "best_epoch": result["best_epoch"],
        "best_val_iou": _finite_or_none(result["best_val_iou"]),
        "train_loss": [row["train_loss"] for row in result["history"]],
        "val_loss": [_finite_or_none(row["val_loss"]) for row in result["history"]],
        "val_iou": [_finite_or_none(row["val_iou"]) for row in result["history"]],
        "weights_sum": float(sum(value.double().sum().item() for value in weights.values())),
        "last_weights_sum": result["last_weights_sum"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, train (every rank), write model.pt and the summary (rank 0); 0 on success."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:  # a bad value (or a batch the ranks cannot split) is a usage error, before any rank starts work
        model_cfg, train_cfg = configs_from_args(args)
        check_global_batch(train_cfg.batch_size, DistContext.from_env().world_size)
    except (ValueError, RuntimeError) as err:
        parser.error(str(err))
    result = train(
        model_cfg,
        train_cfg,
        args.cache,
        args.val_cache or None,
        args.out,
        init_weights=args.init_weights,
        progress=lambda done, total, message: print(f"[{done}/{total}] {message}", flush=True),
    )
    if result["rank"] == 0:
        _write_outputs(args, model_cfg, train_cfg, result)
    print(RESULT_PREFIX + json.dumps(_rank_result(result)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
