"""A long night's memory: the resident memory of `posemask masks` over thousands of photos, after its warm-up.

    python bench/night_memory.py [--photos 3000] [--model shipped] [--shard-size 200]

Makes `--photos` small synthetic photos (160x120, each different, each with a keypoints sidecar
of one person, so that every photo goes through the network, the masks and the writes), runs
the installed `posemask masks IN OUT --quiet` on them and samples the resident memory (VmRSS) of
its whole process tree every 0.2 s. The warm-up ends when the first shard is finished (the model,
the graphs and the first batches are in memory then); the figure is the growth from the median
RSS of the first tenth after it to the highest RSS of the last quarter of the run. Users of
rembg and Ultralytics report memory that grows with the number of images: the target is growth
< 50 MB. Appends one JSON line to bench/results/night_memory.jsonl.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.record import append_result, git_commit  # noqa: E402

RESULTS = REPO / "bench" / "results" / "night_memory.jsonl"
POSEMASK = Path(sys.executable).with_name("posemask")
# a standing person in a 160x120 photo, COCO-17 order (x, y, visibility)
SKELETON = [
    (80, 20), (84, 17), (76, 17), (88, 19), (72, 19), (95, 35), (65, 35), (100, 52), (60, 52),
    (102, 68), (58, 68), (90, 70), (70, 70), (91, 92), (69, 92), (92, 112), (68, 112),
]  # fmt: skip


def make_photos(folder: Path, count: int, seed: int = 0) -> None:
    """`count` distinct photos, each with a sidecar holding one person's keypoints."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    keypoints = [v for x, y in SKELETON for v in (x, y, 2)]
    sidecar = json.dumps([{"keypoints": keypoints, "bbox": [55, 10, 50, 105]}])
    for i in range(count):
        image = rng.integers(60, 200, (120, 160, 3), dtype=np.uint8)
        cv2.ellipse(image, (80, 65), (18, 50), 0, 0, 360, (30, 40, 160), -1)  # a figure to segment
        cv2.imwrite(str(folder / f"p{i:05d}.jpg"), image)
        (folder / f"p{i:05d}.json").write_text(sidecar)


def tree_rss_kib(pid: int) -> int:
    """VmRSS of `pid` and its descendants (kiB); 0 for processes that are gone."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration, ValueError):
            continue
    return total


def night_memory(photos: Path, out: Path, extra: list[str], interval: float = 0.2) -> dict:
    """Run `posemask masks photos out --quiet *extra`, sampling its tree's RSS -> the figures."""
    command = [str(POSEMASK), "masks", str(photos), str(out), "--quiet", *extra]
    started = time.monotonic()
    night = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    samples: list[tuple[float, int]] = []
    warm_at = None
    while night.poll() is None:
        samples.append((time.monotonic() - started, tree_rss_kib(night.pid)))
        if warm_at is None and any((out / "shards").glob("*/manifest.jsonl")):
            warm_at = samples[-1][0]
        time.sleep(interval)
    stderr = night.stderr.read().decode() if night.stderr else ""
    if night.returncode != 0:
        raise RuntimeError(f"posemask masks exited {night.returncode}: {stderr[-2000:]}")
    wall = time.monotonic() - started
    warm_at = warm_at if warm_at is not None else wall
    after = [(t, rss) for t, rss in samples if t >= warm_at and rss > 0]
    if len(after) < 8:
        raise RuntimeError(f"only {len(after)} samples after the warm-up: use more photos")
    tenth = max(1, len(after) // 10)
    baseline = statistics.median(rss for _, rss in after[:tenth])
    last_quarter = max(rss for _, rss in after[-max(1, len(after) // 4) :])
    return {
        "wall_s": round(wall, 2),
        "warm_up_s": round(warm_at, 2),
        "samples": len(samples),
        "rss_after_warm_up_mb": round(baseline / 1024, 1),
        "rss_peak_last_quarter_mb": round(last_quarter / 1024, 1),
        "growth_mb": round((last_quarter - baseline) / 1024, 1),
        "rss_peak_mb": round(max(rss for _, rss in samples) / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=3000)
    parser.add_argument("--model", default="", help="a model.pt (default: the shipped model)")
    parser.add_argument("--shard-size", type=int, default=200)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not POSEMASK.exists():
        sys.exit(f"{POSEMASK} not found: install posemask into this environment (pip install .)")
    extra = ["--shard-size", str(args.shard_size)] + (["--model", args.model] if args.model else [])
    with tempfile.TemporaryDirectory(prefix="posemask-memory-") as tmp:
        photos = Path(tmp) / "photos"
        make_photos(photos, args.photos)
        figures = night_memory(photos, Path(tmp) / "masks", extra)
    line = {
        "bench": "night_memory",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": {"cpus": os.cpu_count()},
        "photos": args.photos,
        "model": args.model or "shipped",
        "shard_size": args.shard_size,
        "figures": figures,
    }
    for name, value in figures.items():
        print(f"{name:26s} {value}")
    append_result(args.results, line)


if __name__ == "__main__":
    main()
