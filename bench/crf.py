"""Speed of dense-CRF refinement and of the classical baselines on 256x256 crops, in one run.

    python bench/crf.py [--split val2017 --min-keypoints 8 --repeat 2]

Crops are built exactly as BuildCache builds them (models.sample.person_sample) from the COCO
sample. Prints ms/image for
  - refine with default CRFParams vs. "no refinement" (a float32 copy of the probability),
  - each baseline, as a ratio to prior_baseline measured in the same run,
and, as a sanity check, each method's mean IoU on those crops (refine is applied to the prior,
the only probability map available without a trained network).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pycocotools.coco import COCO  # noqa: E402

from models.classical import CRFParams, grabcut_baseline, mean_iou, prior_baseline, refine, slic_grabcut_baseline  # noqa: E402
from models.sample import CropConfig, person_sample  # noqa: E402

COCO_ROOT = REPO / "data" / "sample" / "coco"


def load_crops(split: str, min_keypoints: int) -> list[dict[str, np.ndarray]]:
    """Cache-style samples (image, mask, joints, prior as float) of the sample's persons."""
    coco = COCO(str(COCO_ROOT / "annotations" / f"person_keypoints_{split}.json"))
    cfg = CropConfig()
    samples = []
    for ann in sorted(coco.loadAnns(coco.getAnnIds()), key=lambda a: a["id"]):
        if ann["iscrowd"] or ann["num_keypoints"] < min_keypoints:
            continue
        info = coco.loadImgs(ann["image_id"])[0]
        bgr = cv2.imread(str(COCO_ROOT / split / info["file_name"]))
        if bgr is None:
            raise FileNotFoundError(f"bench/crf.py: cannot read {COCO_ROOT / split / info['file_name']}")
        sample = person_sample(
            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
            coco.annToMask(ann),
            np.asarray(ann["keypoints"], np.float32).reshape(17, 3),
            np.asarray(ann["bbox"], np.float32),
            cfg,
        )
        sample["prior_float"] = sample["prior"].astype(np.float32) / 255.0
        samples.append(sample)
    return samples


def time_method(fn: Callable[[dict], np.ndarray], samples: list[dict], repeat: int) -> tuple[float, list]:
    """(ms per image, predictions of the last repeat)."""
    start = time.perf_counter()
    for _ in range(repeat):
        preds = [fn(s) for s in samples]
    return (time.perf_counter() - start) * 1000.0 / (repeat * len(samples)), preds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="val2017")
    parser.add_argument("--min-keypoints", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    samples = load_crops(args.split, args.min_keypoints)
    masks = [s["mask"] for s in samples]
    params = CRFParams()
    methods: dict[str, Callable[[dict], np.ndarray]] = {
        "prior_baseline": lambda s: prior_baseline(s["prior_float"]),
        "raw copy (CRF disabled)": lambda s: refine(s["image"], s["prior_float"], CRFParams(enabled=False)),
        "refine (default CRFParams)": lambda s: refine(s["image"], s["prior_float"], params),
        "grabcut_baseline": lambda s: grabcut_baseline(s["image"], s["joints"]),
        "slic_grabcut_baseline": lambda s: slic_grabcut_baseline(s["image"], s["joints"]),
    }
    results = {name: time_method(fn, samples, args.repeat) for name, fn in methods.items()}
    size = samples[0]["image"].shape[:2]
    print(
        f"{len(samples)} crops {size[0]}x{size[1]} from {args.split}, {args.repeat} repeats; "
        f"CRF params {params.to_dict()}"
    )
    prior_ms = results["prior_baseline"][0]
    copy_ms = results["raw copy (CRF disabled)"][0]
    print(f"{'method':28s} {'ms/image':>10s} {'x prior':>10s} {'x copy':>10s} {'mean IoU':>9s}")
    for name, (ms, preds) in results.items():
        print(f"{name:28s} {ms:10.2f} {ms / prior_ms:10.1f} {ms / copy_ms:10.1f} {mean_iou(preds, masks):9.3f}")


if __name__ == "__main__":
    main()
