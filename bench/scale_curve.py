"""Cost per item as the input grows: BuildCache and GenerateMasks at 1x, 4x and 16x the sample.

    python bench/scale_curve.py [--factors 1 4 16] [--flat-files 20000]

BuildCache: a synthetic COCO split of factor x the sample's val2017 annotations (hard links to the
sample photos under new names, bench/scale.py); its person records made first, BuildCache's work
(build_cache_file, [cache] processes) timed alone (ms per cached person). GenerateMasks: factor x
the 6 sample photos under new names, the built-in detector and pose estimator, timed in this
process after a warm-up night (ms per photo); and the same again with `--flat-files` unrelated
files already in the flat output folder (20,000 earlier masks must not make each photo slower).
Target (issue 14): the cost per item at 16x within 1.3x of 1x for every row. Appends one JSON
line to bench/results/scale_curve.jsonl.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import luigi  # noqa: E402
import luigi.configuration  # noqa: E402
from luigi.task_register import Register  # noqa: E402

from bench.record import append_result, git_commit  # noqa: E402
from bench.scale import write_synthetic_coco  # noqa: E402
from pipeline import GenerateMasks  # noqa: E402
from pipeline.config import use_torch_threads  # noqa: E402

RESULTS = REPO / "bench" / "results" / "scale_curve.jsonl"
SAMPLE = REPO / "data" / "sample"
PHOTOS = SAMPLE / "photos"


def build(task: luigi.Task) -> float:
    """Seconds to build `task` (and whatever it needs that is not done) in this process."""
    Register.clear_instance_cache()
    started = time.perf_counter()
    if not luigi.build([task], local_scheduler=True, log_level="ERROR"):
        raise SystemExit(f"{task} failed")
    return time.perf_counter() - started


def cache_curve(tmp: Path, factor: int, base: int) -> dict:
    """BuildCache's work (pipeline.lib.cachebuild.build_cache_file, the [cache] processes) on the
    person records of a synthetic split of factor x `base` annotations; the records are made first
    (COCOPersons' function), untimed."""
    from models.sample import CropConfig
    from pipeline.config import cache
    from pipeline.lib.annotations import PersonFilter, Tally, coco_person_records
    from pipeline.lib.cachebuild import build_cache_file
    from pipeline.lib.files import write_jsonl

    root = write_synthetic_coco(tmp / f"coco-{factor}x", factor * base, split="train")
    records = tmp / f"records-{factor}x.jsonl"
    annotations = "annotations/person_keypoints_train2017.json"
    write_jsonl(records, coco_person_records(root, annotations, "train2017", "coco", "train", PersonFilter(), Tally()))
    started = time.perf_counter()
    summary = build_cache_file(
        records, root, tmp / f"cache-{factor}x.h5", CropConfig(), processes=cache().processes, window=cache().window
    )
    return {"items": summary["cached"], "seconds": time.perf_counter() - started}


def generate_curve(tmp: Path, factor: int, flat_files: int, name: str = "") -> dict:
    photos, out = tmp / f"photos-{factor}x-{flat_files}{name}", tmp / f"masks-{factor}x-{flat_files}{name}"
    photos.mkdir()
    out.mkdir()
    n = 0
    for copy in range(factor):
        for photo in sorted(PHOTOS.glob("*.jpg")):
            os.link(photo, photos / f"c{copy}_{photo.name}")
            n += 1
    for i in range(flat_files):  # earlier masks of other photos, in the flat output folder
        (out / f"earlier_{i:06d}.jpg.person0.png").touch()
    luigi.configuration.get_config().set("work", "root", str(tmp / "work-generate"))
    seconds = build(GenerateMasks(input_dir=str(photos), output_dir=str(out), print_summary=False, progress=False))
    return {"items": n, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--factors", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--flat-files", type=int, default=20_000)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    use_torch_threads()
    base = len(
        json.loads((SAMPLE / "coco" / "annotations" / "person_keypoints_val2017.json").read_text())["annotations"]
    )
    rows: dict[str, list[dict]] = {
        "BuildCache": [],
        "GenerateMasks": [],
        f"GenerateMasks, {args.flat_files} files in OUTPUT": [],
    }
    tmp = Path(tempfile.mkdtemp(prefix="posemask-scale-curve-"))
    try:
        generate_curve(tmp, 1, 0, "-warm-up")  # warm-up: model, detector and pose estimator loaded in this process
        for factor in args.factors:
            rows["BuildCache"].append({"factor": factor, **cache_curve(tmp, factor, base)})
            rows["GenerateMasks"].append({"factor": factor, **generate_curve(tmp, factor, 0)})
            flat = generate_curve(tmp, factor, args.flat_files)
            rows[f"GenerateMasks, {args.flat_files} files in OUTPUT"].append({"factor": factor, **flat})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'stage':42s} {'factor':>6s} {'items':>6s} {'seconds':>8s} {'ms/item':>8s} {'vs 1x':>6s}")
    for stage, curve in rows.items():
        first = curve[0]["seconds"] / max(curve[0]["items"], 1)
        for row in curve:
            row["ms_per_item"] = 1000 * row["seconds"] / max(row["items"], 1)
            row["vs_first"] = row["ms_per_item"] / (1000 * first) if first else None
            print(
                f"{stage:42s} {row['factor']:6d} {row['items']:6d} {row['seconds']:8.2f} "
                f"{row['ms_per_item']:8.1f} {row['vs_first']:6.2f}"
            )
    line = {
        "bench": "scale_curve",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": {"cpus": os.cpu_count()},
        "flat_files": args.flat_files,
        "curves": rows,
    }
    append_result(args.results, line)


if __name__ == "__main__":
    main()
