"""Does a mask's quality score say how good it is? Rank correlation, calibration and AP, in one run.

    python bench/quality.py [--config configs/shipped.cfg] [--nightly-dump dump.jsonl]

The score is models.quality.expected_iou: the IoU a mask is expected to have from its own
probability map. Measured against the true IoU of each mask:

  - with ground-truth keypoints, on the evaluation sets (--sets, default coco/val ochuman/val):
    the [shipped] network's PredictMasks probabilities of every instance (the DAG's own outputs:
    run bench/accuracy.py first), scored as Evaluate scores them (full-size IoU);
  - without keypoints, on the nightly bench's sets: a `bench/nightly_quality.py --dump` file, its
    posemask rows (each detected person's mask, its expected IoU and its best IoU with a person).

Figures per set: Spearman's rho between score and true IoU (target >= 0.6 with keypoints, >= 0.5
without), mean true IoU per score decile (the calibration table: should rise), and, with
keypoints, COCO mask AP when the masks are ranked by the quality score against the score they
have today (their mean probability). Appends one JSON line to bench/results/quality.jsonl.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.record import append_result, git_commit  # noqa: E402

RESULTS = REPO / "bench" / "results" / "quality.jsonl"
DEFAULT_CONFIG = REPO / "configs" / "shipped.cfg"


def spearman(score: np.ndarray, truth: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(score, truth).statistic) if len(score) > 2 else float("nan")


def deciles(score: np.ndarray, truth: np.ndarray, bins: int = 10) -> list[dict]:
    """Mean true IoU per bin of equal count, by rising score."""
    order = np.argsort(score, kind="stable")
    out = []
    for chunk in np.array_split(order, min(bins, len(order))):
        if chunk.size:
            out.append(
                {
                    "score": round(float(score[chunk].mean()), 3),
                    "true_iou": round(float(truth[chunk].mean()), 3),
                    "masks": int(chunk.size),
                }
            )
    return out


def with_keypoints(network: str, dataset: str, split: str) -> dict:
    """Expected and true IoU of every instance of one evaluation set, and AP by either score."""
    from models.evaluation import coco_mask_ap, score_instance
    from models.masks import encode_rle
    from models.quality import expected_iou
    from pipeline import config
    from pipeline.cache import BuildCache
    from pipeline.lib.cachefile import cache_samples
    from pipeline.lib.predictions import stream_predictions
    from pipeline.lib.records import read_records, record_ignore, record_mask
    from pipeline.predict import PredictMasks

    settings = config.evaluation()
    cache_task = BuildCache(dataset=dataset, split=split)
    predict = PredictMasks(model=network, dataset=dataset, split=split)
    if not predict.complete():
        raise SystemExit(f"{network} has no predictions on {dataset}/{split}: run bench/accuracy.py first")
    records = {r["instance_id"]: r for r in read_records(Path(cache_task.input()["records"].path))}
    root = cache_task.dataset_root()
    samples = cache_samples(cache_task.output()["cache"].path, ("instance_id", "mask", "affine"))
    quality, truth, gt, by_mean, by_quality = [], [], [], [], []
    for sample, prob in zip(samples, stream_predictions(predict.output()["pred"].path), strict=True):
        record = records[int(sample["instance_id"])]
        gt_full = record_mask(record, root)
        row, full = score_instance(
            prob, sample["mask"], sample["affine"], gt_full, settings.threshold, settings.boundary_px,
            record_ignore(record, root),
        )  # fmt: skip
        q = expected_iou(prob, settings.threshold)
        quality.append(q)
        truth.append(row["iou_full"])
        gt.append((record["image_id"], record["instance_id"], encode_rle(gt_full)))
        result = {"image_id": record["image_id"], "category_id": 1, "segmentation": encode_rle(full)}
        by_mean.append({**result, "score": row["score"]})
        by_quality.append({**result, "score": q})
    q, t = np.array(quality), np.array(truth)
    return {
        "masks": len(q),
        "rho": round(spearman(q, t), 3),
        "rho_mean_probability": round(spearman(np.array([r["score"] for r in by_mean]), t), 3),
        "deciles": deciles(q, t),
        "mask_ap_mean_probability": round(coco_mask_ap(gt, by_mean)["AP"], 4),
        "mask_ap_quality": round(coco_mask_ap(gt, by_quality)["AP"], 4),
    }


def without_keypoints(dump: Path) -> dict[str, dict]:
    """Per dataset of a nightly_quality --dump: rho and deciles of expected IoU against best IoU
    (posemask's masks with a probability map behind them)."""
    rows = [json.loads(line) for line in dump.read_text().splitlines() if line.strip()]
    figures = {}
    for dataset in sorted({r["dataset"] for r in rows}):
        mine = [r for r in rows if r["dataset"] == dataset and r["method"] == "posemask"]
        scored = [r for r in mine if r.get("expected_iou") is not None]
        if len(scored) < 3:
            continue
        q = np.array([r["expected_iou"] for r in scored])
        t = np.array([r["best_iou"] for r in scored])
        old = np.array([r["score"] for r in scored])
        figures[dataset] = {
            "masks": len(scored),
            "masks_without_probability": len(mine) - len(scored),
            "rho": round(spearman(q, t), 3),
            "rho_old_score": round(spearman(old, t), 3),
            "deciles": deciles(q, t),
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--sets", nargs="+", default=["coco/val", "ochuman/val"])
    parser.add_argument("--nightly-dump", type=Path, help="a bench/nightly_quality.py --dump file")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()

    from pipeline.settings import load_settings
    from pipeline.train import shipped

    load_settings(args.config)
    network = shipped().network
    figures: dict[str, dict] = {}
    for eval_set in args.sets:
        dataset, split = eval_set.split("/")
        figures[eval_set] = with_keypoints(network, dataset, split)
    if args.nightly_dump:
        figures.update({f"nightly {k}": v for k, v in without_keypoints(args.nightly_dump).items()})
    for name, f in figures.items():
        ap = f" AP {f['mask_ap_mean_probability']:.3f} -> {f['mask_ap_quality']:.3f}" if "mask_ap_quality" in f else ""
        old = f.get("rho_mean_probability", f.get("rho_old_score"))
        print(f"{name:22s} {f['masks']:4d} masks  rho {f['rho']:.3f} (today's score {old:.3f}){ap}")
        steps = "  ".join(f"{d['score']:.2f}->{d['true_iou']:.2f}" for d in f["deciles"])
        print(f"    deciles (score -> true IoU): {steps}")
    append_result(
        args.results,
        {
            "bench": "quality",
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "commit": git_commit(),
            "network": network,
            "nightly_dump": str(args.nightly_dump or ""),
            "figures": figures,
        },
    )


if __name__ == "__main__":
    main()
