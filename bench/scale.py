"""Peak memory and throughput of COCOPersons and BuildCache on a synthetic full-size COCO split.

    python bench/scale.py [--annotations 262465] [--cache-records 1000 5000] [--shards 1]

Builds a COCO-format keypoints file with the real file's structure (info, licenses, images with
all their fields, person annotations with polygons and keypoints, categories), by default as large
as person_keypoints_train2017.json (262,465 person annotations, ~240 MB). Every synthetic image is
a hard link to one of the real sample images, under its own file name, so every path exists and
every annotation matches its image's size. Each stage runs in a fresh subprocess that reports its
own peak RSS (VmHWM) and the sampled peak RSS of its whole process tree (pool workers included);
plain ``json.load`` of the same file is measured the same way, for the ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE_COCO = REPO / "data" / "sample" / "coco"
# person_keypoints_train2017.json: 262,465 person annotations on 64,115 images that have persons.
FULL_SIZE_ANNOTATIONS = 262_465
MIB = 1 << 20


def write_synthetic_coco(
    out_root: Path, annotations: int, split: str = "train", sample_root: Path = SAMPLE_COCO
) -> Path:
    """Write a COCO-format dataset of about `annotations` person annotations into `out_root`.

    The sample's val annotations (polygons, keypoints, crowd regions as they are) are repeated on
    renamed copies of their images: image i is ``<i:012d>.jpg``, a hard link to the sample image it
    copies. Annotation and image ids are unique. The JSON is written item by item (the generator
    itself never holds the file). Returns the dataset root (``annotations/`` + ``<split>2017/``).
    """
    base = json.loads((sample_root / "annotations" / "person_keypoints_val2017.json").read_text())
    by_image: dict[int, list[dict]] = {}
    for ann in base["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    templates = [(im, by_image.get(im["id"], [])) for im in base["images"]]
    image_dir = out_root / f"{split}2017"
    image_dir.mkdir(parents=True, exist_ok=True)
    originals = out_root / ".originals"  # same file system as image_dir, so os.link works
    originals.mkdir(exist_ok=True)
    for im, _ in templates:
        shutil.copyfile(sample_root / "val2017" / im["file_name"], originals / im["file_name"])
    ann_path = out_root / "annotations" / f"person_keypoints_{split}2017.json"
    ann_path.parent.mkdir(parents=True, exist_ok=True)
    n_images = n_anns = 0
    with open(ann_path, "w", encoding="utf-8") as f:
        f.write('{"info": ' + json.dumps(base["info"]) + ', "licenses": ' + json.dumps(base.get("licenses", [])))
        # Two sweeps over the same plan: images first, then annotations (COCO's key order).
        plan: list[tuple[int, int]] = []  # (synthetic image id, template index)
        count = 0
        while count < annotations:
            t = n_images % len(templates)
            plan.append((n_images + 1, t))
            count += len(templates[t][1])
            n_images += 1
        f.write(', "images": [')
        for k, (image_id, t) in enumerate(plan):
            im = dict(templates[t][0], id=image_id, file_name=f"{image_id:012d}.jpg")
            os.link(originals / templates[t][0]["file_name"], image_dir / im["file_name"])
            f.write(("," if k else "") + json.dumps(im))
        f.write('], "annotations": [')
        for image_id, t in plan:
            for ann in templates[t][1]:
                n_anns += 1
                f.write(("," if n_anns > 1 else "") + json.dumps(dict(ann, id=n_anns, image_id=image_id)))
        f.write('], "categories": ' + json.dumps(base["categories"]) + "}")
    return out_root


# ---------------------------------------------------------------------------------------------
# Child side: one stage in a fresh process, reporting its peak memory
# ---------------------------------------------------------------------------------------------


def _status_kib(pid: int | str, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return 0


def _tree_pids(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(FileNotFoundError, ValueError):
                todo.extend(int(c) for c in task.read_text().split())
    return pids


class TreeRSSSampler:
    """Samples the summed RSS of this process and its children (shared pages count once per process,
    so the sum is an upper bound) every `interval_s` seconds in a daemon thread."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self.interval_s, self.peak_kib, self._stop = interval_s, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = sum(_status_kib(p, "VmRSS") for p in _tree_pids(os.getpid()))
            self.peak_kib = max(self.peak_kib, total)
            self._stop.wait(self.interval_s)

    def __enter__(self) -> TreeRSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# Modules each stage imports before it is timed (their memory is the stage's baseline, not its growth).
STAGE_IMPORTS = {
    "json_load": [],
    "persons": ["pipeline.lib.files", "pipeline.lib.annotations"],
    "cache": ["pipeline.lib.cachebuild", "models.sample"],
}


def _stage_json_load(args: argparse.Namespace) -> int:
    with open(args.annotation_file, encoding="utf-8") as f:
        data = json.load(f)
    return len(data["annotations"])


def _stage_persons(args: argparse.Namespace) -> int:
    from pipeline.lib.annotations import PersonFilter, Tally, coco_person_records
    from pipeline.lib.files import write_jsonl

    tally = Tally()
    records = coco_person_records(
        Path(args.root), args.annotations, args.images, "coco", args.split, PersonFilter(), tally
    )
    write_jsonl(Path(args.out), records)
    return tally.kept


def _stage_cache(args: argparse.Namespace) -> int:
    from models.sample import CropConfig
    from pipeline.lib.cachebuild import build_cache_file

    summary = build_cache_file(
        Path(args.records), Path(args.root), Path(args.out), CropConfig(), processes=args.processes, window=args.window
    )
    return summary["cached"]


STAGES: dict[str, Callable[[argparse.Namespace], int]] = {
    "json_load": _stage_json_load,
    "persons": _stage_persons,
    "cache": _stage_cache,
}


def child_main(argv: list[str]) -> None:
    """Run one stage; print one JSON line: count, seconds, baseline_mib (RSS after imports),
    peak_rss_mib (VmHWM of this process), growth_mib (peak - baseline), tree_peak_mib (with workers)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("stage", choices=list(STAGES))
    for name in ("annotation_file", "root", "annotations", "images", "split", "out", "records"):
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default="")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--window", type=int, default=64)
    args = parser.parse_args(argv)
    for module in STAGE_IMPORTS[args.stage]:
        importlib.import_module(module)
    baseline = _status_kib("self", "VmRSS") / 1024
    start = time.perf_counter()
    with TreeRSSSampler() as sampler:
        count = STAGES[args.stage](args)
    seconds = time.perf_counter() - start
    peak = _status_kib("self", "VmHWM") / 1024
    print(
        json.dumps(
            {
                "stage": args.stage,
                "count": count,
                "seconds": round(seconds, 2),
                "baseline_mib": round(baseline, 1),
                "peak_rss_mib": round(peak, 1),
                "growth_mib": round(peak - baseline, 1),
                "tree_peak_mib": round(sampler.peak_kib / 1024, 1),
            }
        )
    )


def measure(stage: str, **options: object) -> dict:
    """Run `stage` in a fresh Python process (``bench/scale.py --child``); return its JSON report."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", stage]
    for key, value in options.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"stage {stage} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def truncate_records(source: Path, target: Path, n: int) -> int:
    """The first `n` lines of a persons.jsonl (a bounded BuildCache run); returns how many were written."""
    written = 0
    with open(source, encoding="utf-8") as src, open(target, "w", encoding="utf-8") as dst:
        for line in src:
            if written == n:
                break
            dst.write(line)
            written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--annotations",
        type=int,
        default=FULL_SIZE_ANNOTATIONS,
        help="person annotations in the synthetic split (default: COCO train2017's)",
    )
    parser.add_argument(
        "--cache-records",
        type=int,
        nargs="*",
        default=[500, 2000],
        help="BuildCache runs on the first N records each (memory must not grow with N)",
    )
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--tmp", default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp_name:
        tmp = Path(tmp_name)
        start = time.perf_counter()
        root = write_synthetic_coco(tmp / "coco", args.annotations)
        ann = root / "annotations" / "person_keypoints_train2017.json"
        print(
            f"synthetic split: {args.annotations} annotations, {ann.stat().st_size / MIB:.0f} MiB JSON, "
            f"written in {time.perf_counter() - start:.0f} s"
        )
        rows = [measure("json_load", annotation_file=ann)]
        records = tmp / "persons.jsonl"
        rows.append(
            measure(
                "persons",
                root=root,
                annotations="annotations/person_keypoints_train2017.json",
                images="train2017",
                split="train",
                out=records,
            )
        )
        for n in args.cache_records:
            subset = tmp / f"persons-{n}.jsonl"
            truncate_records(records, subset, n)
            rows.append(
                measure("cache", records=subset, root=root, out=tmp / f"cache-{n}.h5", processes=args.processes)
                | {"stage": f"cache[{n}]"}
            )
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    """One line per stage; ratios against the first row (plain json.load)."""
    base = rows[0]
    print(
        f"{'stage':<13}{'items':>8}{'s':>7}{'items/s':>9}{'peak MiB':>10}{'imports':>9}{'growth':>8}"
        f"{'tree MiB':>10}{'peak/json':>11}{'growth/json':>13}"
    )
    for r in rows:
        rate = r["count"] / max(r["seconds"], 1e-9)
        print(
            f"{r['stage']:<13}{r['count']:>8}{r['seconds']:>7.1f}{rate:>9.0f}{r['peak_rss_mib']:>10.0f}"
            f"{r['baseline_mib']:>9.0f}{r['growth_mib']:>8.0f}{r['tree_peak_mib']:>10.0f}"
            f"{r['peak_rss_mib'] / base['peak_rss_mib']:>11.2f}{r['growth_mib'] / base['growth_mib']:>13.2f}"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.path.insert(0, str(REPO))
        child_main(sys.argv[2:])
    else:
        main()
