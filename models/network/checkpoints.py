"""Model files and resumable training checkpoints: tensors and plain types only, written atomically
(a temporary file beside the target, fsynced, renamed onto it) and read with
torch.load(..., weights_only=True).

    save_model(path, model, model_cfg, meta)     the final model.pt (MODEL_FORMAT): weights, config, meta
    load_model(path, device) -> (PoseUNet, ModelConfig, meta)   a save_model file, in eval mode on `device`
    read_weights(path) -> state_dict             the weights of a model file (best.pt) or a checkpoint (last.pt)
    CHECKPOINT_FORMAT, MODEL_FORMAT, FORMAT_VERSION   the "format" and "version" every file holds
    _save_checkpoint(path, epoch, model, optimizer, ...)   the resume point after an epoch (last.pt)
    _load(path, expected_format)                 torch.load(weights_only=True), its format and version checked
    _read_start(last_path, init_weights)         (resume checkpoint, init weights) as rank 0 reads them
    _restore_weights(model, model_cfg, checkpoint, last_path, init_weights)   -> where training starts
    _atomic_write(path, write), _atomic_write_text(path, text)   the atomic writes of every training file
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from models.network.netconfig import TrainConfig
from models.network.seeding import _rng_state
from models.network.unet import ModelConfig, PoseUNet
from models.utils import atomic_path

CHECKPOINT_FORMAT = "posemask-checkpoint"
MODEL_FORMAT = "posemask-model"
FORMAT_VERSION = 1

PathLike = str | os.PathLike


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary file beside `path` (models/utils/atomic.py's rule: a killed run's
    temp is removed by the next write), fsync it, then rename it onto `path`."""
    with atomic_path(path) as tmp:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())


def _atomic_torch_save(obj: Any, path: Path) -> None:
    _atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _atomic_write_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _check_plain(value: Any, where: str) -> None:
    """Raise TypeError unless value is built from plain types / tensors (weights_only-loadable)."""
    if value is None or isinstance(value, bool | int | float | str | torch.Tensor):
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str | int):
                raise TypeError(f"{where}: key {key!r} must be str or int")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise TypeError(f"{where} holds {type(value).__name__}; only plain types and tensors can be saved")


def _load(path: Path, expected_format: str | None = None) -> dict[str, Any]:
    """torch.load(weights_only=True) with a clear error naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt file, foreign pickle, ...
        raise ValueError(f"cannot load {path} with weights_only=True: {err}") from err
    if not isinstance(data, dict) or "format" not in data:
        raise ValueError(f"{path} is not a posemask checkpoint or model file")
    if expected_format is not None and data["format"] != expected_format:
        raise ValueError(f"{path} has format {data['format']!r}, expected {expected_format!r}")
    if data.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path} has version {data.get('version')!r}, expected {FORMAT_VERSION}")
    return data


def save_model(path: PathLike, model: PoseUNet, model_cfg: ModelConfig, meta: dict[str, Any]) -> None:
    """Write weights + config + meta (plain types) atomically to `path` (the final model.pt)."""
    _check_plain(meta, "meta")
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    _atomic_torch_save(
        {
            "format": MODEL_FORMAT,
            "version": FORMAT_VERSION,
            "model_config": model_cfg.to_dict(),
            "state_dict": state,
            "meta": meta,
        },
        Path(path),
    )


def load_model(path: PathLike, device: torch.device | str = "cpu") -> tuple[PoseUNet, ModelConfig, dict]:
    """Read a save_model file -> (model in eval mode on `device`, its config, meta)."""
    path = Path(path)
    data = _load(path, MODEL_FORMAT)
    model_cfg = ModelConfig.from_dict(data["model_config"])
    model = PoseUNet(model_cfg)
    try:
        model.load_state_dict(data["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"weights in {path} do not match its config: {err}") from err
    return model.to(device).eval(), model_cfg, data["meta"]


def read_weights(path: PathLike) -> dict[str, torch.Tensor]:
    """Model weights from a model file (save_model, best.pt) or a training checkpoint (last.pt)."""
    path = Path(path)
    data = _load(path)
    if data["format"] == MODEL_FORMAT:
        return data["state_dict"]
    if data["format"] == CHECKPOINT_FORMAT:
        return data["model_state"]
    raise ValueError(f"{path} has unknown format {data['format']!r}")


def _read_start(last_path: Path, init_weights: PathLike | None) -> tuple[dict | None, dict[str, torch.Tensor] | None]:
    """(resume checkpoint or None, init weights or None) as rank 0 reads them under torchrun."""
    checkpoint = _load(last_path, CHECKPOINT_FORMAT) if last_path.exists() else None
    weights = read_weights(Path(init_weights)) if checkpoint is None and init_weights is not None else None
    return checkpoint, weights


def _restore_weights(
    model: PoseUNet,
    model_cfg: ModelConfig,
    checkpoint: dict | None,
    last_path: Path,
    init_weights: PathLike | dict[str, torch.Tensor] | None,
) -> tuple[int, float, int, list[dict]]:
    """Load a resume checkpoint (or init_weights) into `model` -> (start epoch, best IoU, best epoch, history).

    init_weights: a model file / checkpoint path, or weights already read from one (torchrun: by rank 0).
    """
    if checkpoint is not None:
        if checkpoint["model_config"] != model_cfg.to_dict():
            raise ValueError(
                f"checkpoint {last_path} was made with model config "
                f"{checkpoint['model_config']}, not {model_cfg.to_dict()}; "
                "use another out_dir or delete the checkpoint"
            )
        model.load_state_dict(checkpoint["model_state"])
        best_iou = float(checkpoint["best_val_iou"])
        best_iou = -math.inf if math.isnan(best_iou) else best_iou
        return int(checkpoint["epoch"]), best_iou, int(checkpoint["best_epoch"]), list(checkpoint["history"])
    if init_weights is not None:
        state = init_weights if isinstance(init_weights, dict) else read_weights(Path(init_weights))
        name = "(read by rank 0)" if isinstance(init_weights, dict) else init_weights
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise ValueError(f"init_weights {name} do not fit model config {model_cfg}: {err}") from err
    return 0, -math.inf, 0, []


def _save_checkpoint(
    path: Path,
    epoch: int,
    model: PoseUNet,
    optimizer: torch.optim.Optimizer,
    best_iou: float,
    best_epoch: int,
    history: list[dict],
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
) -> None:
    """The resume point after `epoch`: weights, optimizer, RNG states, history (tensors and plain types)."""
    _atomic_torch_save(
        {
            "format": CHECKPOINT_FORMAT,
            "version": FORMAT_VERSION,
            "epoch": epoch,
            "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer_state": optimizer.state_dict(),
            "best_val_iou": best_iou,
            "best_epoch": best_epoch,
            "history": history,
            "rng": _rng_state(),
            "model_config": model_cfg.to_dict(),
            "train_config": train_cfg.to_dict(),
        },
        path,
    )
