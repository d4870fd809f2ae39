"""GenerateMasks throughput against what it cannot do without, measured in one run.

    python bench/generate.py [--repeat 3] [--model path/to/model.pt]

1. Built-in detector + pose estimator (the sample photos, `--repeat` copies): images/s of
   GenerateMasks (detector, pose, network, GrabCut as configured, masks, PNG and JSON writes; one
   shard, one worker) with the CRF off and on, against the detector + pose estimator alone over the
   same images (target: >= 0.7x). A warm-up run first: the model and the estimators are made once
   per process, which a night's first photo pays for.
2. Ground-truth keypoints (the val2017 sample with its keypoints file, `--repeat` copies): people/s of GenerateMasks
   with GrabCut on (the default) and off, against the U-Net forward alone on the same people's crops
   (test-time flip and bf16 as GenerateMasks configures them, the same batches; target >= 0.8x).

3. With --baseline-model (for example the previously shipped model.pt): the same U-Net forward
   alone and GenerateMasks (CRF off) with that model, in the same run, alternated with --model's
   (best of two each): the new network's ms per person and the night's images/s as ratios to it.

Without --model, an untrained PoseUNet of the [TrainModel] architecture is used (the speed is the
trained network's). torch runs with [resources] torch_threads, as the tasks do. Appends a JSON
line to bench/results/generate.jsonl.
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

import cv2
import luigi
import luigi.configuration
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from luigi.task_register import Register  # noqa: E402

from bench.record import append_result, git_commit  # noqa: E402
from models.network import PoseUNet, load_model, native_bf16, save_model  # noqa: E402
from models.people import (  # noqa: E402
    crop_probabilities,
    estimate_people,
    person_from_keypoints,
)
from models.sample import person_sample  # noqa: E402
from pipeline import config  # noqa: E402
from pipeline.config import detect  # noqa: E402
from pipeline.generate import GenerateMasks  # noqa: E402
from pipeline.lib.keypoint_files import load_keypoint_file  # noqa: E402
from pipeline.nightly import estimators  # noqa: E402
from pipeline.train import TrainModel  # noqa: E402

PHOTOS = REPO / "data" / "sample" / "photos"
VAL = REPO / "data" / "sample" / "coco" / "val2017"
VAL_KEYPOINTS = REPO / "data" / "sample" / "coco" / "annotations" / "person_keypoints_val2017.json"
RESULTS = REPO / "bench" / "results" / "generate.jsonl"


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


def copy_val_with_keypoints(dest: Path, repeat: int) -> tuple[Path, Path]:
    """The val2017 sample's photos `repeat` times (r<k>_<name>) and a keypoints file naming the
    copies, so that the given-keypoints runs are long enough for a whole luigi run's fixed cost
    (planning, scheduling, the summary) not to weigh."""
    photos = dest / "val"
    photos.mkdir(parents=True)
    data = json.loads(VAL_KEYPOINTS.read_text())
    images, annotations = [], []
    for r in range(repeat):
        for im in data["images"]:
            shutil.copy(VAL / im["file_name"], photos / f"r{r}_{im['file_name']}")
            images.append(dict(im, id=r * 10**9 + im["id"], file_name=f"r{r}_{im['file_name']}"))
        annotations += [
            dict(a, id=r * 10**9 + a["id"], image_id=r * 10**9 + a["image_id"]) for a in data["annotations"]
        ]
    keypoints = dest / "val_keypoints.json"
    keypoints.write_text(json.dumps({**data, "images": images, "annotations": annotations}))
    return photos, keypoints


def run_generate(photos: Path, out: Path, model: str, crf: bool, **params: object) -> float:
    Register.clear_instance_cache()
    task = GenerateMasks(
        input_dir=str(photos),
        output_dir=str(out),
        model=model,
        crf=crf,
        shard_size=10_000,
        print_summary=False,
        progress=False,
        **params,
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


def forward_alone(model: str, photos: Path, keypoints: Path, min_keypoints: int) -> tuple[float, int]:
    """Seconds of the U-Net forward alone (crops prepared beforehand, batches as GenerateMasks
    makes them) over the people of `keypoints` in `photos`; and the number of people."""
    net, _, _ = load_model(model, "cpu")
    settings = GenerateMasks(input_dir="", output_dir="")  # the network as GenerateMasks runs it
    net.inference_flip = settings.flip
    net.inference_bf16 = settings.bf16 and native_bf16("cpu")
    index = load_keypoint_file(keypoints)
    crop_cfg, pads = config.crop().to_crop_config(), detect().detector_config()
    batch = settings.people_per_batch
    batches = []
    for path in sorted(photos.glob("*.jpg")):
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        samples = []
        for found in index.lookup(path.name)[1]:
            person = person_from_keypoints(
                found.keypoints, found.bbox, image.shape[:2], pads.landmark_pad, pads.landmark_pad_top
            )
            if person is not None and (person.keypoints[:, 2] > 0).sum() >= min_keypoints:
                samples.append(person_sample(image, None, person.keypoints, person.bbox, crop_cfg))
        batches += [samples[i : i + batch] for i in range(0, len(samples), batch)]
    crop_probabilities(net, batches[0], "cpu")  # warm-up
    start = time.perf_counter()
    for samples in batches:
        crop_probabilities(net, samples, "cpu")
    return time.perf_counter() - start, sum(len(b) for b in batches)


def compare_with_baseline(
    baseline: str, model: str, photos: Path, val: Path, val_keypoints: Path, min_keypoints: int, tmp: Path
) -> dict:
    """Forward ms per person and night images/s (CRF off) of `model` and `baseline`, alternated,
    the best of two runs each, and their ratios ({} without a baseline)."""
    if not baseline:
        return {}
    n_photos = len(list(photos.glob("*.jpg")))
    forward_ms: dict[str, float] = {}
    night: dict[str, float] = {}
    for attempt in range(2):
        for name, path in (("model", model), ("baseline", baseline)):
            seconds, people = forward_alone(path, val, val_keypoints, min_keypoints)
            forward_ms[name] = min(forward_ms.get(name, float("inf")), 1000 * seconds / people)
            wall = run_generate(photos, tmp / f"masks-{name}-{attempt}", path, False)
            night[name] = max(night.get(name, 0.0), n_photos / wall)
    return {
        "forward_ms_per_person": forward_ms,
        "forward_ratio": forward_ms["model"] / forward_ms["baseline"],
        "night_images_per_s": night,
        "night_ratio": night["model"] / night["baseline"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="copies of the 6 sample photos")
    parser.add_argument("--model", default="", help="a model.pt (default: untrained, [TrainModel] architecture)")
    parser.add_argument("--baseline-model", default="", help="a model.pt to compare --model with (ratios)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    cfg = luigi.configuration.get_config()
    config.use_torch_threads()
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
        # warm-up: the model, the detector, the pose and selfie graphs are made once per process
        # (a night's first photo pays for them); each timed run below finds them ready
        run_generate(photos, tmp / "masks-warm-up", model, True)
        seconds = {}
        for crf in (False, True):
            out = tmp / f"masks-crf{int(crf)}"
            seconds[crf] = run_generate(photos, out, model, crf)
            summary = json.loads((out / "summary.json").read_text())
            assert summary["processed"] == n, summary
        # the fast setting: no test-time flip (its mirrored forward costs a forward)
        fast_s = run_generate(photos, tmp / "masks-fast", model, False, grabcut=False, flip=False)
        defaults = GenerateMasks(input_dir="", output_dir="")  # its [GenerateMasks] values
        min_keypoints = defaults.min_keypoints
        pose_s, people = run_pose_alone(photos, min_keypoints)
        val, val_keypoints = copy_val_with_keypoints(tmp, args.repeat)
        given = {}
        for grabcut in (True, False):
            out = tmp / f"masks-given-grabcut{int(grabcut)}"
            given[grabcut] = run_generate(val, out, model, False, keypoints=str(val_keypoints), grabcut=grabcut)
        forward_s, forward_people = forward_alone(model, val, val_keypoints, min_keypoints)
        baseline = compare_with_baseline(args.baseline_model, model, photos, val, val_keypoints, min_keypoints, tmp)
    rates = {crf: n / s for crf, s in seconds.items()}
    fast_rate = n / fast_s
    pose_rate = n / pose_s
    print(
        f"images: {n} ({args.repeat} x the {n // args.repeat} sample photos), people found: {people}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"GenerateMasks, CRF off : {seconds[False]:.2f} s = {rates[False]:.2f} images/s (whole luigi run)")
    print(f"GenerateMasks, CRF on  : {seconds[True]:.2f} s = {rates[True]:.2f} images/s")
    print(f"GenerateMasks, fast    : {fast_s:.2f} s = {fast_rate:.2f} images/s (no flip)")
    print(f"detector + pose alone  : {pose_s:.2f} s = {pose_rate:.2f} images/s")
    print(
        f"ratio GenerateMasks / pose alone: CRF off {rates[False] / pose_rate:.2f}, "
        f"CRF on {rates[True] / pose_rate:.2f}, fast {fast_rate / pose_rate:.2f}"
    )
    forward_rate = forward_people / forward_s
    given_rates = {g: forward_people / s for g, s in given.items()}
    print(f"given keypoints, {forward_people} people ({args.repeat} x the val2017 sample):")
    print(f"  U-Net forward alone        : {forward_rate:.1f} people/s")
    for g, rate in given_rates.items():
        print(f"  GenerateMasks, grabcut {'on ' if g else 'off'} : {rate:.1f} people/s = {rate / forward_rate:.2f}x")
    if baseline:
        print(
            f"against {args.baseline_model}: forward {baseline['forward_ms_per_person']['model']:.1f} against "
            f"{baseline['forward_ms_per_person']['baseline']:.1f} ms per person = {baseline['forward_ratio']:.2f}x; "
            f"night (CRF off) {baseline['night_images_per_s']['model']:.2f} against "
            f"{baseline['night_images_per_s']['baseline']:.2f} images/s = {baseline['night_ratio']:.2f}x"
        )
    line = {
        "bench": "generate",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads()},
        "model": args.model or "untrained [TrainModel] architecture",
        "settings": {
            **{k: getattr(defaults, k) for k in ("grabcut", "flip", "bf16")},
            "read_ahead": config.resources().read_ahead,
            "box_mask": detect().box_mask,
            "native_bf16": native_bf16("cpu"),
        },
        "detector": {
            "images": n,
            "people": people,
            "generate_images_per_s": {"crf_off": rates[False], "crf_on": rates[True]},
            "detector_pose_images_per_s": pose_rate,
            "ratio_crf_off": rates[False] / pose_rate,
            "ratio_crf_on": rates[True] / pose_rate,
            "ratio_fast": fast_rate / pose_rate,
        },
        "given_keypoints": {
            "people": forward_people,
            "forward_people_per_s": forward_rate,
            "generate_people_per_s": {"grabcut_on": given_rates[True], "grabcut_off": given_rates[False]},
            "ratio_grabcut_on": given_rates[True] / forward_rate,
            "ratio_grabcut_off": given_rates[False] / forward_rate,
        },
        "baseline": {"model": args.baseline_model, **baseline} if baseline else None,
    }
    append_result(args.results, line)


if __name__ == "__main__":
    main()
