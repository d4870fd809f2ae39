"""Speed of the offline pose estimator and person detectors on the COCO sample, in one run.

    python bench/pose.py [--splits val2017 train2017 --min-keypoints 10 --repeat 2]

Prints, all measured in the same run so the ratios are comparable across machines:
  - plain JPEG decode (cv2.imread) ms/image of the sample images: the reference,
  - PoseEstimator.estimate ms/person on the annotated boxes (>= min-keypoints labelled), and
    ms/image (all those boxes of one image), with the ratio to the decode time,
  - each person-detection method's ms/image, ratio to decode, and its recall / precision at
    IoU 0.5 on the non-crowd people of area >= --min-area (smaller ones are ignored).
The first call of each model (graph start, ~0.2 s) is made before timing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.people import (  # noqa: E402
    METHODS,
    PersonDetector,
    PoseEstimator,
    match_detections,
)

COCO_ROOT = REPO / "data" / "sample" / "coco"


def load_records(splits: list[str], min_keypoints: int, min_area: float) -> list[dict]:
    """One record per sample image: path, boxes to estimate, people to find / to ignore."""
    records = []
    for split in splits:
        coco = json.loads((COCO_ROOT / "annotations" / f"person_keypoints_{split}.json").read_text())
        for image in coco["images"]:
            anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
            keep = [not a["iscrowd"] and a["area"] >= min_area for a in anns]
            records.append(
                {
                    "path": COCO_ROOT / split / image["file_name"],
                    "pose_boxes": [a["bbox"] for a in anns if not a["iscrowd"] and a["num_keypoints"] >= min_keypoints],
                    "gt": np.array([a["bbox"] for a, k in zip(anns, keep, strict=True) if k], np.float32).reshape(
                        -1, 4
                    ),
                    "ignore": np.array(
                        [a["bbox"] for a, k in zip(anns, keep, strict=True) if not k], np.float32
                    ).reshape(-1, 4),
                }
            )
    return records


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path))
    if bgr is None:
        raise FileNotFoundError(f"bench/pose.py: cannot read {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", nargs="+", default=["val2017", "train2017"])
    parser.add_argument("--min-keypoints", type=int, default=10)
    parser.add_argument("--min-area", type=float, default=64 * 64)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    records = load_records(args.splits, args.min_keypoints, args.min_area)
    n_images = len(records)

    start = time.perf_counter()
    for _ in range(args.repeat):
        images = [read_rgb(r["path"]) for r in records]
    decode_ms = 1000 * (time.perf_counter() - start) / (args.repeat * n_images)
    print(f"images: {n_images}  JPEG decode (cv2.imread + BGR->RGB): {decode_ms:.1f} ms/image")

    n_people = sum(len(r["pose_boxes"]) for r in records)
    with PoseEstimator() as pose:
        pose.estimate(images[0])  # graph start, not timed
        start = time.perf_counter()
        for _ in range(args.repeat):
            found = sum(
                kp is not None
                for image, r in zip(images, records, strict=True)
                for kp in pose.estimate_many(image, r["pose_boxes"])
            )
        pose_s = (time.perf_counter() - start) / args.repeat
    print(
        f"PoseEstimator.estimate: {n_people} boxes, {found} found; {1000 * pose_s / n_people:.1f} ms/person, "
        f"{1000 * pose_s / n_images:.1f} ms/image = {1000 * pose_s / n_images / decode_ms:.1f}x decode"
    )

    for method in METHODS:
        with PersonDetector(method) as detector:
            detector.detect(images[0])  # model start, not timed
            start = time.perf_counter()
            for _ in range(args.repeat):
                all_boxes = [detector.detect(image) for image in images]
            det_ms = 1000 * (time.perf_counter() - start) / (args.repeat * n_images)
        true_pos = false_pos = num_gt = 0
        for boxes, r in zip(all_boxes, records, strict=True):
            tp, fp, n = match_detections(boxes, r["gt"], r["ignore"])
            true_pos, false_pos, num_gt = true_pos + tp, false_pos + fp, num_gt + n
        print(
            f"detect {method:20s}: {det_ms:6.1f} ms/image = {det_ms / decode_ms:5.1f}x decode; "
            f"recall {true_pos / max(num_gt, 1):.3f} ({true_pos}/{num_gt}), "
            f"precision {true_pos / max(true_pos + false_pos, 1):.3f} ({false_pos} FP) at IoU 0.5"
        )


if __name__ == "__main__":
    main()
