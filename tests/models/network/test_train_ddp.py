"""DistributedDataParallel through torchrun (models/network/distributed.py, models/network/train_dist.py).

Two CPU processes (gloo, one thread each) train what one process trains with the same global
batch: the ranks' batches together are the single process's batch (ShardSampler), DDP averages
the gradients, so only float reduction order differs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from bench.synthetic import write_synthetic_cache
from models.network.checkpoints import load_model
from models.network.distributed import DistContext, ShardSampler
from models.network.netconfig import TrainConfig
from models.network.train_dist import RESULT_PREFIX
from models.network.training import train
from models.network.unet import ModelConfig, PoseUNet

REPO = Path(__file__).resolve().parents[3]
# GroupNorm: BatchNorm would normalise over each rank's half batch, a different model.
TINY_GN = ModelConfig(base_channels=4, depth=2, norm="group")
# float32 (cpu_bf16 off): the tolerance below is about float32 sums in another order
SETTINGS = dict(
    lr=1e-2, seed=3, num_workers=0, num_threads=1, device="cpu", augment="none", progress_bar=False, cpu_bf16=False
)
# Measured: the 2-rank weights differ from the 1-process ones by at most 9e-6 after 6 Adam steps at
# lr 1e-2 (weights move by up to 0.33); float32 sums in another order differ by ~1e-7 relative per
# step and Adam passes relative gradient differences on about 1:1. 1e-4 leaves a margin of 10 and
# is 600x below what a different batch (8 or 2 instead of 4) gives: 0.07 and 0.1.
WEIGHT_ATOL = 1e-4


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ddp_caches")
    return {
        # 10 samples, global batch 4: steps of 4, 4, 2 (per rank 2, 2, 1): the short last step too
        "train": write_synthetic_cache(root / "train.h5", 10, seed=1, size=64),
        # 5: validation shards of 3 and 2 samples, summed across ranks
        "val": write_synthetic_cache(root / "val.h5", 5, seed=2, size=64),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]
    command += ["--master-port", str(_free_port()), "-m", "models.train_dist", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)


def _cli_args(caches: dict[str, Path], out: Path, epochs: int, batch_size: int) -> list[str]:
    args = ["--cache", str(caches["train"]), "--val-cache", str(caches["val"]), "--out", str(out)]
    args += ["--epochs", str(epochs), "--batch-size", str(batch_size), "--no-progress-bar"]
    args += ["--lr", str(SETTINGS["lr"]), "--seed", str(SETTINGS["seed"]), "--num-workers", "0", "--num-threads", "1"]
    args += ["--device", "cpu", "--augment", "none", "--base-channels", "4", "--depth", "2", "--norm", "group"]
    args += ["--no-cpu-bf16"]
    return args


def _rank_results(run: subprocess.CompletedProcess) -> dict[int, dict]:
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = [
        json.loads(line[len(RESULT_PREFIX) :]) for line in run.stdout.splitlines() if line.startswith(RESULT_PREFIX)
    ]
    return {result["rank"]: result for result in results}


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[key].double() - b[key].double()).abs().max().item() for key in a)


def _last_weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model_state"]


@pytest.mark.slow
def test_two_ranks_resumed_train_what_one_process_trains(caches: dict[str, Path], tmp_path: Path) -> None:
    # 2 processes: one epoch, then a second run of the command resumes it to two
    ddp = tmp_path / "ddp"
    first = _rank_results(_torchrun(_cli_args(caches, ddp, epochs=1, batch_size=4)))
    assert sorted(first) == [0, 1] and first[0]["resumed_from_epoch"] is None
    ranks = _rank_results(_torchrun(_cli_args(caches, ddp, epochs=2, batch_size=4)))
    assert sorted(ranks) == [0, 1]
    assert all(r["resumed_from_epoch"] == 1 and r["world_size"] == 2 for r in ranks.values())
    # every rank saw the same numbers, bit for bit, and holds the same weights
    strip = ("rank", "device")
    assert {k: v for k, v in ranks[0].items() if k not in strip} == {
        k: v for k, v in ranks[1].items() if k not in strip
    }

    # 1 process, same global batch, uninterrupted
    single = train(
        TINY_GN, TrainConfig(epochs=2, batch_size=4, **SETTINGS), [caches["train"]], [caches["val"]], tmp_path / "one"
    )
    diff = _max_diff(_last_weights(ddp), _last_weights(tmp_path / "one"))
    moved = _max_diff(_last_weights(ddp), PoseUNet(TINY_GN).state_dict())
    assert diff <= WEIGHT_ATOL, f"2 ranks vs 1 process: weights differ by {diff:.3g}"
    assert moved > 1000 * WEIGHT_ATOL, "training barely moved the weights: the comparison would prove nothing"
    history = ranks[0]
    for key in ("train_loss", "val_loss"):
        assert history[key] == pytest.approx([row[key] for row in single["history"]], rel=1e-5), key
    # a rounding difference may move a pixel across the threshold: 1e-3 is a few pixels of one of 5 instances
    assert history["val_iou"] == pytest.approx([row["val_iou"] for row in single["history"]], abs=1e-3)
    assert history["best_epoch"] == single["best_epoch"]
    print(f"\nDDP 2 ranks vs 1 process: max |dw| = {diff:.3g} (weights moved up to {moved:.3g})")

    # the tolerance tells batches apart: a single process with batch 8 (what a per-rank batch of 4
    # would have made) ends far away
    other = train(
        TINY_GN, TrainConfig(epochs=2, batch_size=8, **SETTINGS), [caches["train"]], [caches["val"]], tmp_path / "b8"
    )
    assert _max_diff(_last_weights(ddp), _last_weights(tmp_path / "b8")) > 100 * WEIGHT_ATOL
    assert other["history"][0]["train_loss"] != pytest.approx(single["history"][0]["train_loss"], rel=1e-5)

    # rank 0's outputs: the selected model, the summary, no temporary files
    model, cfg, meta = load_model(ddp / "model.pt")
    assert cfg == TINY_GN and meta["world_size"] == 2 and meta["epochs_completed"] == 2
    assert _max_diff(model.state_dict(), _last_weights(ddp)) == 0.0
    summary = json.loads((ddp / "train_summary.json").read_text())
    assert summary["resumed_from_epoch"] == 1 and len(summary["history"]) == 2
    assert len((ddp / "history.csv").read_text().splitlines()) == 3
    assert not [p.name for p in ddp.rglob(".*tmp-*")], "temporary files left behind"


@pytest.mark.slow
def test_two_ranks_train_the_pretrained_network_as_one_process(caches: dict[str, Path], tmp_path: Path) -> None:
    """The MobileNetV2 path (its pretrained parts at their own rate) under DDP: the same weights as
    one process with the same global batch."""
    extra = ["--encoder", "mobilenet_v2", "--encoder-lr-scale", "0.1"]
    ranks = _rank_results(_torchrun(_cli_args(caches, tmp_path / "ddp", epochs=1, batch_size=4) + extra))
    assert sorted(ranks) == [0, 1]
    cfg = ModelConfig(base_channels=4, depth=2, norm="group", encoder="mobilenet_v2")
    settings = TrainConfig(epochs=1, batch_size=4, encoder_lr_scale=0.1, **SETTINGS)
    train(cfg, settings, [caches["train"]], [caches["val"]], tmp_path / "one")
    diff = _max_diff(_last_weights(tmp_path / "ddp"), _last_weights(tmp_path / "one"))
    moved = _max_diff(_last_weights(tmp_path / "ddp"), PoseUNet(cfg).state_dict())
    assert diff <= WEIGHT_ATOL < moved / 100, (diff, moved)


@pytest.mark.slow
def test_batch_not_divisible_by_the_ranks_is_a_clear_error(caches: dict[str, Path], tmp_path: Path) -> None:
    run = _torchrun(_cli_args(caches, tmp_path / "bad", epochs=1, batch_size=5))
    assert run.returncode != 0
    assert "batch_size 5 is the global batch and must be divisible by the number of processes (WORLD_SIZE 2)" in (
        run.stderr
    )
    assert not (tmp_path / "bad" / "checkpoints").exists()


def test_train_refuses_a_batch_the_ranks_cannot_split(
    caches: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check is in train() itself, before any process group or file: not only in the command line."""
    for name, value in {"WORLD_SIZE": "3", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    with pytest.raises(ValueError, match=r"batch_size 4 .* divisible .*WORLD_SIZE 3"):
        train(TINY_GN, TrainConfig(epochs=1, batch_size=4, **SETTINGS), [caches["train"]], None, tmp_path)
    assert not torch.distributed.is_initialized() and not (tmp_path / "checkpoints").exists()


def test_context_from_the_torchrun_environment() -> None:
    assert DistContext.from_env({}) == DistContext() and not DistContext().active
    assert DistContext.from_env({"WORLD_SIZE": "1"}).world_size == 1
    env = {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "MASTER_ADDR": "node0", "MASTER_PORT": "29500"}
    ctx = DistContext.from_env(env)
    assert (ctx.rank, ctx.local_rank, ctx.world_size, ctx.active, ctx.is_main) == (3, 1, 4, True, False)
    with pytest.raises(RuntimeError, match=r"\['RANK', 'LOCAL_RANK'\] are not set: launch .* torchrun"):
        DistContext.from_env({"WORLD_SIZE": "2", "MASTER_ADDR": "a", "MASTER_PORT": "1"})
    with pytest.raises(ValueError, match="bad distributed ranks"):
        DistContext.from_env({**env, "RANK": "4"})


@pytest.mark.parametrize("size", [10, 11, 1])
def test_shards_together_are_the_single_process_batches(size: int) -> None:
    """The ranks' k-th batches (batch 4 / 2 ranks) hold the k-th batch that a shuffling DataLoader of
    4 draws from the same generator; the last size mod 2 positions are left out, so that both
    ranks take as many steps (a step is a collective)."""
    samples = list(range(size))
    single = torch.Generator().manual_seed(7)
    order = [i for batch in DataLoader(samples, batch_size=4, shuffle=True, generator=single) for i in batch.tolist()]
    assert sorted(order) == samples
    shards = []
    for rank in (0, 1):
        generator = torch.Generator().manual_seed(7)
        sampler = ShardSampler(size, rank, 2, generator, shuffle=True)
        shards.append([b.tolist() for b in DataLoader(samples, batch_size=2, sampler=sampler, generator=generator)])
        assert len(sampler) == size // 2
    assert len(shards[0]) == len(shards[1]), "ranks must take as many steps"
    kept = size - size % 2
    expected = [sorted(order[start : min(start + 4, kept)]) for start in range(0, kept, 4)]
    assert [sorted(a + b) for a, b in zip(*shards, strict=True)] == expected


def test_validation_shards_cover_every_sample_once() -> None:
    shards = [list(ShardSampler(5, rank, 2, drop_tail=False)) for rank in (0, 1)]
    assert shards == [[0, 2, 4], [1, 3]]
    with pytest.raises(ValueError, match="generator"):
        ShardSampler(5, 0, 2, shuffle=True)


def test_ranks_augment_with_their_own_reproducible_streams() -> None:
    """Every rank reseeds from (seed, epoch, rank) at each epoch and offsets its workers' seeds: the
    ranks draw different augmentations, and a resumed epoch draws what it drew the first time."""
    from models.network.seeding import _rng_state, _seed_rank_epoch, _seed_rank_worker, _set_rng_state

    saved = _rng_state()  # the global RNGs are reseeded here: leave them as the other tests found them
    try:
        draws = {}
        for rank in (0, 1):
            _seed_rank_epoch(3, 5, rank)
            draws[rank] = torch.rand(4)
        _seed_rank_epoch(3, 5, 1)
        torch.testing.assert_close(torch.rand(4), draws[1], atol=0, rtol=0)
        assert not torch.equal(draws[0], draws[1])
        _seed_rank_epoch(3, 6, 1)
        assert not torch.equal(torch.rand(4), draws[1]), "another epoch, another stream"

        worker_draws = []
        for rank in (1, 2):
            torch.manual_seed(1234)  # what every rank's worker 0 gets from the shared base seed
            _seed_rank_worker(rank, 0)
            worker_draws.append(torch.rand(4))
        assert not torch.equal(worker_draws[0], worker_draws[1])
    finally:
        _set_rng_state(saved)
