"""GenerateMasks throughput on the sample photos vs. the pose estimator alone, measured in one run.

    python bench/generate.py [--repeat 3] [--model path/to/model.pt]

Prints images/s of GenerateMasks (built-in detector + pose estimator, network, masks, PNG and JSON
writes; one shard, one worker) with the CRF off and on, images/s of the person detector + pose
estimator alone over the same images, and the ratios: what the masks cost on top of the pose.
Without --model, an untrained PoseUNet of the [TrainModel] architecture is used (the speed is
the trained network's).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import luigi
import luigi.configuration
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from luigi.task_register import Register  # noqa: E402

from models.people import estimate_people  # noqa: E402
from models.train import save_model  # noqa: E402
from models.unet import PoseUNet  # noqa: E402
from pipeline.config import detect  # noqa: E402
from pipeline.generate import GenerateMasks  # noqa: E402
from pipeline.nightly import estimators  # noqa: E402
from pipeline.train import TrainModel  # noqa: E402

PHOTOS = REPO / "data" / "sample" / "photos"


def copy_photos(dest: Path, repeat: int) -> int:
    """The sample photos, `repeat` times under different names (distinct content hashes are not
    needed: every copy is new to the empty output folder)."""
    dest.mkdir(parents=True)
    n = 0
    for r in range(repeat):
        for photo in sorted(PHOTOS.glob("*.jpg")):
            shutil.copy(photo, dest / f"r{r}_{photo.name}")
            n += 1
    return n


def run_generate(photos: Path, out: Path, model: str, crf: bool) -> float:
    Register.clear_instance_cache()
    task = GenerateMasks(
        input_dir=str(photos), output_dir=str(out), model=model, crf=crf, shard_size=10_000, print_summary=False
    )
    start = time.perf_counter()
    if not luigi.build([task], local_scheduler=True, log_level="ERROR"):
        raise SystemExit("GenerateMasks failed")
    return time.perf_counter() - start


def run_pose_alone(photos: Path, min_keypoints: int) -> tuple[float, int]:
    paths = sorted(photos.glob("*.jpg"))
    detector, estimator = estimators()  # the ones MaskShard uses, already warm after run_generate
    fallback = detect().box_fallback
    start = time.perf_counter()
    people = 0
    for p in paths:
        image = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        people += len(estimate_people(image, detector.detect, estimator.estimate, min_keypoints, fallback))
    return time.perf_counter() - start, people


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="copies of the 6 sample photos")
    parser.add_argument("--model", default="", help="a model.pt (default: untrained, [TrainModel] architecture)")
    args = parser.parse_args()
    cfg = luigi.configuration.get_config()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        cfg.set("work", "root", str(tmp / "work"))
        model = args.model
        if not model:
            model_cfg = TrainModel().model_config()
            torch.manual_seed(0)
            model = str(tmp / "model.pt")
            save_model(model, PoseUNet(model_cfg), model_cfg, {"note": "untrained, for timing"})
        photos = tmp / "photos"
        n = copy_photos(photos, args.repeat)
        seconds = {}
        for crf in (False, True):
            out = tmp / f"masks-crf{int(crf)}"
            seconds[crf] = run_generate(photos, out, model, crf)
            summary = json.loads((out / "summary.json").read_text())
            assert summary["processed"] == n, summary
        pose_s, people = run_pose_alone(photos, GenerateMasks(input_dir="", output_dir="").min_keypoints)
    rates = {crf: n / s for crf, s in seconds.items()}
    pose_rate = n / pose_s
    print(
        f"images: {n} ({args.repeat} x the {n // args.repeat} sample photos), people found: {people}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"GenerateMasks, CRF off : {seconds[False]:.2f} s = {rates[False]:.2f} images/s (whole luigi run)")
    print(f"GenerateMasks, CRF on  : {seconds[True]:.2f} s = {rates[True]:.2f} images/s")
    print(f"detector + pose alone  : {pose_s:.2f} s = {pose_rate:.2f} images/s")
    print(
        f"ratio GenerateMasks / pose alone: CRF off {rates[False] / pose_rate:.2f}, "
        f"CRF on {rates[True] / pose_rate:.2f}"
    )


if __name__ == "__main__":
    main()
