"""Benchmark: is training / inference bound by the data path or by the model?

For each device (CPU, and CUDA when present) it runs the same number of steps twice:
  1. through the real data path: cache.h5 -> CacheDataset -> DataLoader -> device -> step;
  2. on one batch already in memory on the device (InMemoryBatch);
and prints samples/s for both and their ratio (target >= 0.9: the data path is not the bottleneck).
The same for inference (forward + probability + copy back to the host).

The data path is the one models/network/training.py takes: on CUDA batches cross as uint8 and are normalised
on the GPU (--transfer auto; --transfer float / uint8 force either, to measure the difference).
A uint8 run first checks that its normalised batch equals the float path's (torch.equal) on the
device. The pose map and prior are read from the cache; drawing them on the GPU from the joints
is not implemented (it could not be measured). Appends one JSON line per run to
bench/results/train_step.jsonl (bench/gpu_check.sh runs this on CUDA).

    python bench/train_step.py                      # synthetic cache of 64 samples, small model
    python bench/train_step.py --base-channels 16   # the training default model
    python bench/train_step.py --cache data/work/BuildCache/<hash>/cache.h5 --num-workers 4
    python bench/train_step.py --devices cuda --transfer float   # the float transfer, for comparison
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.record import append_result, git_commit, tree_dirty  # noqa: E402
from bench.synthetic import write_synthetic_cache  # noqa: E402
from models.network import (  # noqa: E402
    CacheDataset,
    InMemoryBatch,
    ModelConfig,
    PoseUNet,
    batch_to_device,
    count_parameters,
    raw_transfer,
    train_step,
)
from models.sample import AUGMENTATIONS, AugmentConfig  # noqa: E402

RESULTS = REPO / "bench" / "results" / "train_step.jsonl"
POSE_SOURCE = "cache (drawing the pose map and prior on the GPU from the joints is not implemented: not measured)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(
    device: torch.device, steps: int, warmup: int, batches: Iterator[dict], step: Callable[[dict], None]
) -> float:
    """Run warmup + steps batches through step(); return seconds spent on the timed steps."""
    for _ in range(warmup):
        step(next(batches))
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        step(next(batches))
    _sync(device)
    return time.perf_counter() - started


def _best_of(
    repeats: int,
    device: torch.device,
    steps: int,
    warmup: int,
    real_batches: Iterator[dict],
    memory_batches: Iterator[dict],
    step: Callable[[dict], None],
) -> tuple[float, float]:
    """Alternate real / in-memory measurements `repeats` times (fair under a shared, noisy CPU);
    return the fastest seconds of each."""
    real, mem = [], []
    for _ in range(repeats):
        real.append(_timed(device, steps, warmup, real_batches, step))
        mem.append(_timed(device, steps, warmup, memory_batches, step))
    return min(real), min(mem)


def _loader_batches(loader: DataLoader, device: torch.device, channels_last: bool, prior_eps: float) -> Iterator[dict]:
    """Endless batches from the DataLoader (re-iterating over epochs), moved to the device."""
    for batch in itertools.chain.from_iterable(itertools.repeat(loader)):
        yield batch_to_device(batch, device, channels_last, prior_eps)


def uint8_matches_float(
    cache: Path, augment: AugmentConfig, batch_size: int, device: torch.device, channels_last: bool
) -> bool:
    """Whether one uint8 batch normalised on `device` equals the float batch moved there (same seed)."""
    moved = []
    for raw in (True, False):
        torch.manual_seed(1)  # the same flips for both
        data = CacheDataset(cache, augment=augment, raw=raw)
        batch = next(iter(DataLoader(data, batch_size=batch_size, pin_memory=device.type == "cuda")))
        data.close()
        moved.append(batch_to_device(batch, device, channels_last, data.prior_eps))
    got, want = moved
    return set(got) == set(want) and all(
        got[key].dtype == want[key].dtype and torch.equal(got[key], want[key]) for key in want
    )


def _rates(n: int, real: float, mem: float) -> dict[str, float]:
    return {"real_samples_per_s": n / real, "memory_samples_per_s": n / mem, "ratio": mem / real}


def bench_device(device: torch.device, cache: Path, model_cfg: ModelConfig, args: argparse.Namespace) -> dict[str, Any]:
    """Train and inference figures on one device (printed); returns them for the JSON line."""
    on_cuda = device.type == "cuda"
    use_amp = (on_cuda and not args.no_amp) or (not on_cuda and args.cpu_bf16)
    channels_last = on_cuda
    if on_cuda:
        torch.backends.cudnn.benchmark = True
    batch_size = args.batch_size or (32 if on_cuda else 8)
    steps = args.steps or (50 if on_cuda else 8)
    raw = {"auto": raw_transfer(device), "uint8": True, "float": False}[args.transfer]
    augment = AUGMENTATIONS[args.augment]
    transfer = "uint8" if raw else "float"
    result: dict[str, Any] = {
        "batch_size": batch_size,
        "steps": steps,
        "amp": use_amp,
        "channels_last": channels_last,
        "transfer": transfer,
        "uint8_equals_float": None,
    }
    if raw:
        equal = uint8_matches_float(cache, augment, batch_size, device, channels_last)
        result["uint8_equals_float"] = equal
        print(f"[{device.type}] uint8 batch normalised on the device equals the float batch: {equal}")
    torch.manual_seed(0)
    model = PoseUNet(model_cfg).to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    # the in-memory batch is the float one, already on the device: the model step alone
    dataset = CacheDataset(cache, augment=augment)
    if len(dataset) < batch_size:
        raise SystemExit(f"{cache} has {len(dataset)} samples, fewer than --batch-size {batch_size}")
    memory = InMemoryBatch.from_dataset(dataset, batch_size).to(device, channels_last).as_dict()
    dataset.close()
    dataset = CacheDataset(cache, augment=augment, raw=raw)

    def loader_of(data: CacheDataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            data,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=args.num_workers,
            pin_memory=on_cuda,
            drop_last=True,
            persistent_workers=args.num_workers > 0,
        )

    loader = loader_of(dataset, shuffle=True)
    label = (
        f"[{device.type}] batch={batch_size} steps={steps} workers={args.num_workers} amp={use_amp} transfer={transfer}"
    )

    def train_fn(batch: dict) -> None:
        train_step(model, optimizer, batch, use_amp)

    n = steps * batch_size
    model.train()
    real, mem = _best_of(
        args.repeats,
        device,
        steps,
        args.warmup,
        _loader_batches(loader, device, channels_last, dataset.prior_eps),
        itertools.repeat(memory),
        train_fn,
    )
    result["train"] = _rates(n, real, mem)
    print(f"{label} train  real data path : {n / real:8.2f} samples/s")
    print(f"{label} train  in-memory batch: {n / mem:8.2f} samples/s")
    print(f"{label} train  ratio real/mem : {mem / real:8.3f} (target >= 0.9)")

    def infer_fn(batch: dict) -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            output = model(batch["image"], batch["posemap"], batch["prior"])
        model.probability(output).cpu()

    model.eval()
    infer_dataset = CacheDataset(cache, raw=raw)
    infer_loader = loader_of(infer_dataset, shuffle=False)
    real, mem = _best_of(
        args.repeats,
        device,
        steps,
        args.warmup,
        _loader_batches(infer_loader, device, channels_last, infer_dataset.prior_eps),
        itertools.repeat(memory),
        infer_fn,
    )
    result["infer"] = _rates(n, real, mem)
    print(f"{label} infer  real data path : {n / real:8.2f} samples/s")
    print(f"{label} infer  in-memory batch: {n / mem:8.2f} samples/s")
    print(f"{label} infer  ratio real/mem : {mem / real:8.3f} (target >= 0.9)")
    dataset.close()
    infer_dataset.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, help="cache.h5 to read (default: a synthetic one)")
    parser.add_argument("--samples", type=int, default=64, help="samples in the synthetic cache")
    parser.add_argument("--batch-size", type=int, default=0, help="default 8 on CPU, 32 on CUDA")
    parser.add_argument("--steps", type=int, default=0, help="timed steps; default 8 on CPU, 50 on CUDA")
    parser.add_argument("--repeats", type=int, default=2, help="alternating measurements, best kept")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before each measurement")
    parser.add_argument(
        "--num-workers",
        type=int,
        default=0,
        help="DataLoader workers; 0 is fastest on a shared 2-core CPU, use more with a GPU",
    )
    parser.add_argument(
        "--base-channels",
        type=int,
        default=8,
        help=f"default 8 keeps the CPU run short; the training default is {ModelConfig().base_channels}",
    )
    parser.add_argument("--depth", type=int, default=ModelConfig().depth)
    parser.add_argument("--head", default=ModelConfig().head, choices=["logit", "paper"])
    parser.add_argument("--devices", default="all", help="'all' (cpu + cuda if present), 'cpu' or 'cuda'")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (0 = torch default). 1 is ~2-4x faster on a shared 2-core "
        "box, where extra OpenMP threads fight the DataLoader workers",
    )
    parser.add_argument("--no-amp", action="store_true", help="disable bf16 autocast on CUDA")
    parser.add_argument("--cpu-bf16", action="store_true", help="bf16 autocast on the CPU (TrainConfig.cpu_bf16)")
    parser.add_argument(
        "--transfer",
        default="auto",
        choices=["auto", "uint8", "float"],
        help="batches over the bus: auto = as training (uint8 on CUDA, float on CPU), or force one",
    )
    parser.add_argument(
        "--augment", default="flip", choices=list(AUGMENTATIONS), help="training augmentation (TrainConfig's default)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON lines file to append this run to")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    # A non-zero output layer, so that the backward pass reaches every layer as in a trained model.
    model_cfg = ModelConfig(base_channels=args.base_channels, depth=args.depth, head=args.head, zero_init_last=False)
    print(f"model: {model_cfg.to_dict()} params={count_parameters(PoseUNet(model_cfg))}")
    print(
        f"torch {torch.__version__}, CPU threads {torch.get_num_threads()}, "
        f"CUDA: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}"
    )
    devices = {"all": ["cpu"] + (["cuda"] if torch.cuda.is_available() else []), "cpu": ["cpu"], "cuda": ["cuda"]}[
        args.devices
    ]
    if "cuda" in devices and not torch.cuda.is_available():
        raise SystemExit("--devices cuda: CUDA is not available")
    print(f"pose map and prior: {POSE_SOURCE}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache
        if cache is None:
            cache = write_synthetic_cache(Path(tmp) / "cache.h5", args.samples, seed=0)
            print(f"synthetic cache: {args.samples} samples of 256x256")
        for name in devices:
            results[name] = bench_device(torch.device(name), cache, model_cfg, args)
    line = {
        "bench": "train_step",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": git_commit() + ("+dirty" if tree_dirty(tracked_only=True) else ""),
        "machine": {
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "config": {
            "model": model_cfg.to_dict(),
            "cache": str(args.cache) if args.cache else f"synthetic, {args.samples} samples of 256x256",
            "num_workers": args.num_workers,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "transfer": args.transfer,
            "augment": args.augment,
            "pose_source": "cache",
        },
        "devices": results,
    }
    append_result(args.results, line)
    mismatched = [name for name, result in results.items() if result["uint8_equals_float"] is False]
    if mismatched:
        raise SystemExit(f"uint8 transfer normalised differently from the float path on {mismatched}")


if __name__ == "__main__":
    main()
