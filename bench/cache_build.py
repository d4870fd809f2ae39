"""BuildCache throughput vs. plain JPEG decoding of the same images, measured in one run.

    python bench/cache_build.py [--dataset coco --split train --repeat 3]

Prints samples/s of BuildCache (decode + mask + crop + pose map + prior + HDF5 write, 2 processes),
images/s of cv2.imread over the same records (1 process), and their ratio.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import luigi
import luigi.configuration

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.cache import BuildCache  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="coco")
    parser.add_argument("--split", default="train")
    parser.add_argument("--repeat", type=int, default=8, help="records are repeated to lengthen the run")
    args = parser.parse_args()
    cfg = luigi.configuration.get_config()
    with tempfile.TemporaryDirectory() as tmp:
        cfg.set("work", "root", tmp)
        for name in ("coco", "ochuman", "voc"):
            cfg.set(name, "root", str(REPO / "data" / "sample" / name))
        persons = BuildCache(dataset=args.dataset, split=args.split).requires()
        luigi.build([persons], local_scheduler=True, log_level="ERROR")
        records_path = Path(persons.output()["records"].path)
        lines = records_path.read_text().splitlines() * args.repeat
        records_path.write_text("\n".join(lines) + "\n")
        task = BuildCache(dataset=args.dataset, split=args.split)
        start = time.perf_counter()
        luigi.build([task], local_scheduler=True, log_level="ERROR")
        cache_s = time.perf_counter() - start
        n = json.loads(Path(task.output()["summary"].path).read_text())["cached"]
        root = Path(persons.root or cfg.get(args.dataset, "root"))
        paths = [root / json.loads(line)["image"] for line in lines]
        start = time.perf_counter()
        for p in paths:
            cv2.imread(str(p), cv2.IMREAD_COLOR)
        decode_s = time.perf_counter() - start
    cache_rate, decode_rate = n / cache_s, len(paths) / decode_s
    print(f"BuildCache  : {n} samples in {cache_s:.2f} s = {cache_rate:.1f} samples/s (2 processes)")
    print(f"JPEG decode : {len(paths)} images in {decode_s:.2f} s = {decode_rate:.1f} images/s (1 process)")
    print(f"ratio BuildCache / decode = {cache_rate / decode_rate:.2f}")


if __name__ == "__main__":
    main()
