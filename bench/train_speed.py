"""Training samples/s of the default recipe against the float32 one, in one run.

    python bench/train_speed.py                       # GroupNorm and BatchNorm, 3 alternating repeats
    python bench/train_speed.py --norms group --repeats 1

All go through models.network.train (the real data path: cache.h5 -> CacheDataset -> DataLoader ->
step) on the same synthetic cache of 256 px samples, the same net (ModelConfig(base_channels=16),
the training default's size) and TrainConfig's default batch (4):

  - baseline: how training ran when issue 14 was filed: float32, channels-last, 2 DataLoader
    workers (TrainConfig(cpu_bf16=False, num_workers=2));
  - default: TrainConfig()'s settings as models.network.training applies them on this machine (bf16 autocast
    where the CPU computes bf16 natively, channels-last but contiguous for a GroupNorm net under
    bf16: _prepare_device; on the CPU the batches loaded in the training process: loader_workers);
  - compile (--compile): the default with TrainConfig.compile (its first epoch holds the compile);

Torch keeps its default threads (one per core), as TrainModel does. samples/s is the mean of the
epochs after the first (DataLoader start-up and first-step allocations excluded); the figure is the
median over --repeats alternating runs. Appends one JSON line to bench/results/train_speed.jsonl.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.record import append_result, git_commit  # noqa: E402
from bench.synthetic import write_synthetic_cache  # noqa: E402
from models.network import (  # noqa: E402
    ModelConfig,
    TrainConfig,
    cpu_has_native_bf16,
)
from models.network.training import _prepare_device, train  # noqa: E402

RESULTS = REPO / "bench" / "results" / "train_speed.jsonl"
RECIPES = {
    "baseline": {"cpu_bf16": False, "num_workers": 2},
    "default": {},
}


def samples_per_s(model_cfg: ModelConfig, train_cfg: TrainConfig, cache: Path, out: Path) -> float:
    history = train(model_cfg, train_cfg, [cache], None, out)["history"]
    return statistics.mean(row["samples_per_s"] for row in history[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--norms", nargs="+", default=["group", "batch"], choices=["group", "batch"])
    parser.add_argument("--samples", type=int, default=48, help="samples in the synthetic cache")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is not counted)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also the default recipe with torch.compile")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        cache = write_synthetic_cache(tmp / "cache.h5", args.samples, seed=0, size=256)
        for norm in args.norms:
            model_cfg = ModelConfig(base_channels=16, norm=norm)
            recipes = {**RECIPES, **({"compile": {"compile": True}} if args.compile else {})}
            rates: dict[str, list[float]] = {name: [] for name in recipes}
            applied = {}
            for repeat in range(args.repeats):
                for name, overrides in recipes.items():
                    train_cfg = TrainConfig(epochs=args.epochs, progress_bar=False, **overrides)
                    _, amp, channels_last = _prepare_device(train_cfg, None, norm)
                    applied[name] = {"bf16": amp, "channels_last": channels_last}
                    rate = samples_per_s(model_cfg, train_cfg, cache, tmp / f"{norm}-{name}-{repeat}")
                    rates[name].append(rate)
                    print(f"{norm:5s} {name:8s} run {repeat + 1}: {rate:6.2f} samples/s {applied[name]}", flush=True)
            medians = {name: statistics.median(values) for name, values in rates.items()}
            ratio = medians["default"] / medians["baseline"]
            print(f"{norm}: default {medians['default']:.2f} / baseline {medians['baseline']:.2f} = x{ratio:.2f}")
            if "compile" in medians:
                gain = medians["compile"] / medians["default"]
                print(f"{norm}: with torch.compile {medians['compile']:.2f} = x{gain:.2f} over the default")
            figures[norm] = {"samples_per_s": rates, "median": medians, "ratio": ratio, "applied": applied}
    append_result(
        args.results,
        {
            "bench": "train_speed",
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "commit": git_commit(),
            "machine": {
                "cpus": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "native_bf16": cpu_has_native_bf16(),
            },
            "config": {"samples": args.samples, "epochs": args.epochs, "recipes": RECIPES, "size": 256},
            "figures": figures,
        },
    )


if __name__ == "__main__":
    main()
