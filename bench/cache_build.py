"""BuildCache throughput vs. plain JPEG decoding of the same images, measured in one run.

    python bench/cache_build.py [--dataset coco --split train --repeat 8 --runs 3 --label NAME]

Each run times BuildCache (decode + mask + crop + pose map + prior + HDF5 write, [cache] processes
workers, through luigi) over the split's records repeated `repeat` times, then cv2.imread over the
same records' images (1 process, one decode per record), and prints samples/s, images/s and
their ratio. The medians over `runs` runs (ratio: the median of the runs' ratios, each a pair
measured back to back) are printed and appended as one JSON line to bench/results/cache_build.jsonl
with the date, commit, machine (cpu count, load average before the first run) and configuration.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import luigi
import luigi.configuration

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.record import append_result, git_commit, tree_dirty  # noqa: E402
from pipeline import config  # noqa: E402
from pipeline.cache import BuildCache  # noqa: E402

RESULTS = REPO / "bench" / "results" / "cache_build.jsonl"


def machine() -> dict[str, object]:
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        # another job on the machine skews both rates: recorded so such a run can be recognised
        "load_avg_1m_before": round(os.getloadavg()[0], 2),
    }


def one_run(task: BuildCache, paths: list[Path]) -> dict[str, float]:
    """Build the cache once (from scratch) and decode the same images once; rates and their ratio."""
    shutil.rmtree(task.work_dir(), ignore_errors=True)
    start = time.perf_counter()
    if not luigi.build([task], local_scheduler=True, log_level="ERROR"):
        raise SystemExit("BuildCache failed")
    cache_s = time.perf_counter() - start
    n = json.loads(Path(task.output()["summary"].path).read_text())["cached"]
    start = time.perf_counter()
    for p in paths:
        cv2.imread(str(p), cv2.IMREAD_COLOR)
    decode_s = time.perf_counter() - start
    cache_rate, decode_rate = n / cache_s, len(paths) / decode_s
    return {
        "samples": n,
        "cache_s": round(cache_s, 3),
        "decode_s": round(decode_s, 3),
        "samples_per_s": round(cache_rate, 1),
        "images_per_s": round(decode_rate, 1),
        "ratio": round(cache_rate / decode_rate, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="coco")
    parser.add_argument("--split", default="train")
    parser.add_argument("--repeat", type=int, default=8, help="records are repeated to lengthen the run")
    parser.add_argument("--runs", type=int, default=3, help="measurements; medians are reported")
    parser.add_argument("--label", default="", help="a name for this measurement in the results file")
    parser.add_argument("--results", default=str(RESULTS), help="JSON lines file appended to ('' = none)")
    args = parser.parse_args()
    facts = machine()
    cfg = luigi.configuration.get_config()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg.set("work", "root", tmp)
        for name in ("coco", "ochuman", "voc"):
            cfg.set(name, "root", str(REPO / "data" / "sample" / name))
        persons = BuildCache(dataset=args.dataset, split=args.split).requires()
        luigi.build([persons], local_scheduler=True, log_level="ERROR")
        records_path = Path(persons.output()["records"].path)
        lines = records_path.read_text().splitlines() * args.repeat
        records_path.write_text("\n".join(lines) + "\n")
        root = Path(persons.root or cfg.get(args.dataset, "root"))
        paths = [root / json.loads(line)["image"] for line in lines]
        task = BuildCache(dataset=args.dataset, split=args.split)
        settings = config.cache()
        for k in range(args.runs):
            run = one_run(task, paths)
            runs.append(run)
            print(
                f"run {k + 1}/{args.runs}: BuildCache {run['samples']} samples in {run['cache_s']:.2f} s = "
                f"{run['samples_per_s']:.1f} samples/s ({settings.processes} processes); JPEG decode "
                f"{len(paths)} images in {run['decode_s']:.2f} s = {run['images_per_s']:.1f} images/s (1 process); "
                f"ratio {run['ratio']:.2f}"
            )
    medians = {key: statistics.median(r[key] for r in runs) for key in ("samples_per_s", "images_per_s", "ratio")}
    of = f"median of {len(runs)} runs"
    print(f"BuildCache  : {medians['samples_per_s']:.1f} samples/s ({settings.processes} processes), {of}")
    print(f"JPEG decode : {medians['images_per_s']:.1f} images/s (1 process), {of}")
    print(f"ratio BuildCache / decode = {medians['ratio']:.2f}")
    if args.results:
        commit, dirty = git_commit(), tree_dirty()
        line = {
            "bench": "cache_build",
            "label": args.label,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "commit": commit,
            "dirty": dirty,
            "machine": facts,
            "config": {
                "dataset": args.dataset,
                "split": args.split,
                "repeat": args.repeat,
                "records": len(lines),
                "processes": settings.processes,
                "window": settings.window,
                "crop_size": config.crop().size,
                "runs": args.runs,
            },
            **medians,
            "runs": runs,
        }
        append_result(args.results, line)


if __name__ == "__main__":
    main()
