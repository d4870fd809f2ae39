"""Training, checkpointing (resumable), saving/loading and batched inference for PoseUNet.

Pure torch (no luigi): the TrainModel / FineTune / PredictMasks tasks call `train`, `save_model`,
`load_model` and `predict`. Every file is written to a temporary file in the target's directory
and renamed into place, and everything saved holds tensors and plain types only, so that it loads
with `torch.load(..., weights_only=True)`.

Layout of a training output folder `out_dir`:
    checkpoints/last.pt   full state after the latest epoch (resume point)
    checkpoints/best.pt   model weights of the best validation IoU (load_model format)
    history.csv           one row per epoch
    history.png           loss / IoU curves

Under torchrun (WORLD_SIZE > 1) `train` runs data-parallel (models/distributed.py): one process per
rank, DistributedDataParallel, each rank a strided shard of the cache and batch_size / WORLD_SIZE
samples a step (batch_size is the global batch), validation sums gathered from all ranks; only
rank 0 reads and writes out_dir. models/train_dist.py is the command line for it.

On CUDA the caches are read raw (`raw_transfer`): batches cross PCIe as uint8 (a quarter of the
float32 bytes, from pinned memory, non-blocking) and `batch_to_device` normalises them on the GPU
to exactly the floats of the CPU path (models/dataset.py normalize_batch). On the CPU the float
path is kept as it was. The pose map and prior are the cache's on both (see models/dataset.py).
"""

from __future__ import annotations

import csv
import functools
import io
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from models.atomic import atomic_path
from models.augment import AUGMENTATIONS
from models.dataset import CacheDataset, normalize_batch
from models.distributed import (
    DistContext,
    ShardSampler,
    barrier,
    from_main,
    process_group,
    rank_device,
    sum_over_ranks,
    sync_buffers_from_main,
)
from models.netconfig import SCHEDULES, TrainConfig  # noqa: F401 - re-exported: models.train.TrainConfig
from models.unet import ModelConfig, PoseUNet, cpu_has_native_bf16

CHECKPOINT_FORMAT = "posemask-checkpoint"
MODEL_FORMAT = "posemask-model"
FORMAT_VERSION = 1
HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "val_iou", "seconds", "samples_per_s", "lr")

LR_FLOOR = 0.01  # warm-up starts and cosine ends at lr x LR_FLOOR
RANK_SEED_STRIDE = 1_000_003  # under torchrun, rank r's augmentation seeds are offset by r x this

PathLike = str | os.PathLike
ProgressFn = Callable[[int, int, str], None]


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


# ----------------------------------------------------------------------------- devices, RNG, I/O


def resolve_device(name: str) -> torch.device:
    """ "auto" -> cuda if available else cpu; anything else as torch.device (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return device


def _seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: derive numpy/python seeds from the worker's torch seed."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _seed_rank_worker(rank: int, worker_id: int) -> None:
    """worker_init_fn of rank > 0 under torchrun. Every rank's DataLoader draws the same base seed
    from the shared shuffle generator, so without this offset all ranks would augment alike."""
    torch.manual_seed((torch.initial_seed() + rank * RANK_SEED_STRIDE) % 2**63)
    _seed_worker(worker_id)


def _seed_rank_epoch(seed: int, epoch: int, rank: int) -> None:
    """Under torchrun: global RNGs (augmentation without workers) from (seed, epoch, rank), so each
    rank draws its own stream and a resumed run draws what the uninterrupted one did (the
    checkpoint holds rank 0's RNG state only)."""
    value = (seed * 100_003 + epoch + rank * RANK_SEED_STRIDE) % 2**32
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def _rng_state() -> dict[str, Any]:
    """All global RNG states as tensors and plain types (weights_only-loadable)."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_name),
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "python": {"version": int(py_version), "internal": [int(v) for v in py_internal], "gauss_next": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of _rng_state."""
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state(
        (npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["cached_gaussian"])
    )
    pyst = state["python"]
    random.setstate((pyst["version"], tuple(pyst["internal"]), pyst["gauss_next"]))
    cuda_states = state.get("cuda")
    if cuda_states is not None and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary file beside `path` (models/atomic.py's rule: a killed run's
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


# ----------------------------------------------------------------------------- model files


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


# ----------------------------------------------------------------------------- metrics, steps


def instance_iou(probability: torch.Tensor, target: torch.Tensor, threshold: float) -> torch.Tensor:
    """IoU per instance of (probability > threshold) vs target > 0.5.

    probability, target: (B,...) -> (B,) float32; an instance with both masks empty scores 1.
    """
    pred = (probability > threshold).flatten(1)
    truth = (target > 0.5).flatten(1)
    intersection = (pred & truth).sum(1).float()
    union = (pred | truth).sum(1).float()
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))


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


# ----------------------------------------------------------------------------- history outputs


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


# ----------------------------------------------------------------------------- training


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


def check_global_batch(batch_size: int, world_size: int) -> int:
    """The batch of one rank -> batch_size / world_size; ValueError unless world_size divides batch_size."""
    if batch_size % world_size:
        raise ValueError(
            f"TrainConfig.batch_size {batch_size} is the global batch and must be divisible by the number "
            f"of processes (WORLD_SIZE {world_size}): each rank takes batch_size / WORLD_SIZE samples a step"
        )
    return batch_size // world_size


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


def _read_start(last_path: Path, init_weights: PathLike | None) -> tuple[dict | None, dict[str, torch.Tensor] | None]:
    """(resume checkpoint or None, init weights or None) as rank 0 reads them under torchrun."""
    checkpoint = _load(last_path, CHECKPOINT_FORMAT) if last_path.exists() else None
    weights = read_weights(Path(init_weights)) if checkpoint is None and init_weights is not None else None
    return checkpoint, weights


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
    ckpt_dir = out_dir / "checkpoints"
    last_path, best_path = ckpt_dir / "last.pt", ckpt_dir / "best.pt"
    notify = (progress if ctx.is_main else None) or (lambda done, total, message: None)
    reduce = functools.partial(sum_over_ranks, ctx=ctx) if ctx.active else None

    random.seed(train_cfg.seed)
    np.random.seed(train_cfg.seed)
    torch.manual_seed(train_cfg.seed)
    model = PoseUNet(model_cfg)
    initial: PathLike | dict[str, torch.Tensor] | None = init_weights
    if ctx.active:  # rank 0 reads, the others get its copy: only rank 0 needs to see out_dir
        checkpoint, initial = from_main(lambda: _read_start(last_path, init_weights), ctx)
    else:
        checkpoint = _load(last_path, CHECKPOINT_FORMAT) if last_path.exists() else None
    start_epoch, best_iou, best_epoch, history = _restore_weights(model, model_cfg, checkpoint, last_path, initial)

    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    # All ranks built and restored the same weights; DDP broadcasts rank 0's at construction anyway.
    net: nn.Module = (
        DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if ctx.active
        else model
    )
    if train_cfg.compile:  # the training forward only: weights, checkpoints and validation use `model`
        net = torch.compile(net)
    optimizer = make_optimizer(model, train_cfg)
    if checkpoint is not None:
        optimizer.load_state_dict(checkpoint["optimizer_state"])
        _set_rng_state(checkpoint["rng"])

    raw = raw_transfer(device)
    train_set = CacheDataset(
        train_paths, augment=AUGMENTATIONS[train_cfg.augment], prior_eps=train_cfg.prior_eps, raw=raw
    )
    val_set: CacheDataset | None = None
    try:  # the h5 handles are closed on errors (and KeyboardInterrupt) too
        val_set = CacheDataset(val_paths, prior_eps=train_cfg.prior_eps, raw=raw) if val_paths else None
        shuffle_generator = torch.Generator()
        if ctx.active:
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
        else:
            train_loader = _make_loader(
                train_set, train_cfg.batch_size, True, train_cfg.num_workers, device, shuffle_generator
            )
            val_loader = (
                _make_loader(val_set, train_cfg.batch_size, False, train_cfg.num_workers, device, None)
                if val_set is not None
                else None
            )

        total = train_cfg.epochs
        show_bar = train_cfg.progress_bar and ctx.is_main
        notify(start_epoch, total, f"resuming after epoch {start_epoch}" if checkpoint else "starting")
        for epoch in range(start_epoch, total):
            # history and best_epoch are the same on every rank (gathered sums): all stop together
            if stopped_early(history, best_epoch, train_cfg.patience):
                break
            started = time.perf_counter()
            # Shuffle order (and worker seeds) depend only on (seed, epoch): resume-safe.
            shuffle_generator.manual_seed(train_cfg.seed * 100_003 + epoch)
            if ctx.active:
                _seed_rank_epoch(train_cfg.seed, epoch, ctx.rank)
            train_loss, seen = _run_epoch(
                model,
                train_loader,
                optimizer,
                device,
                use_amp,
                channels_last,
                f"epoch {epoch + 1}/{total}",
                show_bar,
                lambda fraction, epoch=epoch: learning_rate(train_cfg, epoch + fraction),
                forward=net,
                reduce=reduce,
                prior_eps=train_cfg.prior_eps,
            )
            train_seconds = time.perf_counter() - started
            # every rank now holds what rank 0 validates and saves (BatchNorm statistics included)
            sync_buffers_from_main(model, ctx)
            val_loss = val_iou = math.nan
            is_last = epoch + 1 == total
            if val_loader is not None and ((epoch + 1) % train_cfg.val_every == 0 or is_last):
                # the bare model: DDP's forward would sync buffers, a collective that shards of
                # unequal length cannot match
                val_loss, val_iou = evaluate(
                    model,
                    val_loader,
                    device,
                    use_amp,
                    channels_last,
                    train_cfg.iou_threshold,
                    show_bar,
                    reduce,
                    prior_eps=train_cfg.prior_eps,
                )
            row = {
                "epoch": epoch + 1,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_iou": val_iou,
                "seconds": time.perf_counter() - started,
                "samples_per_s": seen / train_seconds if train_seconds > 0 else math.nan,
                "lr": float(optimizer.param_groups[0]["lr"]),
            }
            history.append(row)

            # Without validation every epoch counts as "best" so that best.pt is the latest model.
            improved = val_loader is None or (not math.isnan(val_iou) and val_iou > best_iou)
            if improved:
                if val_loader is not None:
                    best_iou = val_iou
                best_epoch = epoch + 1
            if ctx.is_main:
                if improved:
                    save_model(best_path, model, model_cfg, {"epoch": epoch + 1, "val_iou": val_iou})
                _save_checkpoint(
                    last_path, epoch + 1, model, optimizer, best_iou, best_epoch, history, model_cfg, train_cfg
                )
                _write_history(history, out_dir / "history.csv", out_dir / "history.png")
            barrier(ctx)  # the others wait while rank 0 writes
            notify(
                epoch + 1,
                total,
                f"epoch {epoch + 1}/{total} train_loss={train_loss:.4f} "
                f"val_loss={val_loss:.4f} val_iou={val_iou:.4f} "
                f"({row['samples_per_s']:.1f} samples/s)",
            )

        # this rank's own weights before rank 0's best replace them: equal on all ranks unless they drifted apart
        last_weights_sum = float(sum(value.double().sum().item() for value in model.state_dict().values()))
        if ctx.active:
            best_state = from_main(lambda: read_weights(best_path) if best_path.exists() else None, ctx)
            if best_state is not None:
                model.load_state_dict(best_state)
        elif best_path.exists():
            model.load_state_dict(read_weights(best_path))
        model.eval()
    finally:
        train_set.close()
        if val_set is not None:
            val_set.close()
    return {
        "model": model,
        "history": history,
        "best_val_iou": best_iou if math.isfinite(best_iou) else math.nan,
        "best_epoch": best_epoch,
        "epochs_completed": int(history[-1]["epoch"]) if history else 0,
        # stopped_early is False without history, so history[-1] exists when it is True
        "stopped_early": stopped_early(history, best_epoch, train_cfg.patience) and history[-1]["epoch"] < total,
        "resumed_from_epoch": start_epoch if checkpoint is not None else None,
        "device": str(device),
        "last_checkpoint": str(last_path),
        "best_checkpoint": str(best_path),
        "rank": ctx.rank,
        "world_size": ctx.world_size,
        "last_weights_sum": last_weights_sum,
    }


# ----------------------------------------------------------------------------- inference


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
    dataset = CacheDataset(paths, prior_eps=prior_eps, raw=raw_transfer(device))
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
