"""Does a mask's quality score say how good it is? Rank correlation, calibration and AP, in one run.

    python bench/quality.py [--config configs/shipped.cfg] [--nightly-dump dump.jsonl]
                            [--fit-calibration models/weights/posemask_unet/quality.json]

The score is models.evaluation.quality.mask_quality: the IoU a mask is expected to have, from its own
probability map and its agreement with the person's pose prior, through the shipped model's
calibration. Measured against the true IoU of each mask:

  - with ground-truth keypoints, on the evaluation sets (--sets, default coco/val ochuman/val):
    the [shipped] network's PredictMasks probabilities of every instance (the DAG's own outputs:
    run bench/accuracy.py first, or pass --predict-shipped), scored as Evaluate scores them
    (full-size IoU);
  - without keypoints, on the nightly bench's sets: a `bench/nightly_quality.py --dump` file, its
    posemask rows (each detected person's mask, its expected IoU, and its IoU with the annotated
    person its box found, matched_iou).

Figures per set: Spearman's rho between quality and true IoU (target >= 0.6 with keypoints, >= 0.5
without; without keypoints over the matched masks: those whose detector box found an annotated
person, at box IoU >= 0.5 as the nightly bench's recall counts a person found, each scored
against that person whatever its mask. A mask whose box found nobody has no truth to compare
with: a false detection, or a person the set leaves unannotated, whose mask may be perfect; the
detector's score, the score's other factor, ranks those), the calibration table (mean quality and
mean true IoU per bin of equal count, by rising quality: should rise; ten bins, fewer where a bin would hold
under MIN_BIN_MASKS masks, whose mean is then mostly noise), and, with keypoints, COCO mask AP when
the masks are ranked by quality against the confidence they were ranked by before (their mean
probability; the nightly AP of both is bench/nightly_quality.py's). Appends one JSON line to
bench/results/quality.jsonl.

--predict-shipped makes those PredictMasks outputs without retraining: the packaged weights stand in
as TrainModel's output for the [shipped] network (they are that training's result; the DAG's
outputs of a real bench/accuracy.py run are used where they exist), then PredictMasks runs.

--fit-calibration FILE fits the quality head (models.evaluation.fit_quality_head) on the nightly
dump's --fit-on set (the validation set, coco128train: never an evaluation set), and writes it to
FILE (the shipped model's quality.json). It is fitted on every mask that overlaps an annotated
person (touching_rows), against its best IoU with one: those include the duplicates and the box
masks whose pose another person took, whose low IoU the head must learn (whose boxes rarely find a
person of their own).
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


MIN_BIN_MASKS = 15  # a bin's mean true IoU has a standard error of about 0.25 / sqrt(masks)


def deciles(score: np.ndarray, truth: np.ndarray, bins: int = 10) -> list[dict]:
    """Mean score and true IoU per bin of equal count, by rising score: `bins` bins, fewer where a
    bin would hold under MIN_BIN_MASKS masks (two at least)."""
    order = np.argsort(score, kind="stable")
    out = []
    for chunk in np.array_split(order, max(2, min(bins, len(order) // MIN_BIN_MASKS))):
        if chunk.size:
            out.append(
                {
                    "score": round(float(score[chunk].mean()), 3),
                    "true_iou": round(float(truth[chunk].mean()), 3),
                    "masks": int(chunk.size),
                }
            )
    return out


def rises(table: list[dict]) -> bool:
    """Whether a calibration table's mean true IoU never falls from one bin to the next."""
    return all(b["true_iou"] >= a["true_iou"] for a, b in zip(table, table[1:], strict=False))


def with_keypoints(network: str, dataset: str, split: str) -> dict:
    """Expected and true IoU of every instance of one evaluation set, and AP by either score."""
    from models.evaluation import coco_mask_ap, mask_quality, model_calibration, score_instance
    from models.sample import encode_rle
    from models.utils import SHIPPED_MODEL
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
    samples = cache_samples(cache_task.output()["cache"].path, ("instance_id", "mask", "affine", "prior"))
    calibration = model_calibration(SHIPPED_MODEL)
    quality, truth, gt, by_mean, by_quality = [], [], [], [], []
    for sample, prob in zip(samples, stream_predictions(predict.output()["pred"].path), strict=True):
        record = records[int(sample["instance_id"])]
        gt_full = record_mask(record, root)
        row, full = score_instance(
            prob, sample["mask"], sample["affine"], gt_full, settings.threshold, settings.boundary_px,
            record_ignore(record, root),
        )  # fmt: skip
        q = mask_quality(prob, sample["prior"], settings.threshold, calibration, "given", full.mean())
        quality.append(q)
        truth.append(row["iou_full"])
        gt.append((record["image_id"], record["instance_id"], encode_rle(gt_full)))
        result = {"image_id": record["image_id"], "category_id": 1, "segmentation": encode_rle(full)}
        by_mean.append({**result, "score": row["confidence"]})
        by_quality.append({**result, "score": q})
    quality = decayed_by_image(by_quality)
    q, t = np.array(quality), np.array(truth)
    table = deciles(q, t)
    return {
        "masks": len(q),
        "rho": round(spearman(q, t), 3),
        "rho_mean_probability": round(spearman(np.array([r["score"] for r in by_mean]), t), 3),
        "deciles": table,
        "deciles_rise": rises(table),
        "mask_ap_mean_probability": round(coco_mask_ap(gt, by_mean)["AP"], 4),
        "mask_ap_quality": round(coco_mask_ap(gt, by_quality)["AP"], 4),
    }


def predict_with_shipped_weights(network: str, sets: list[str]) -> None:
    """PredictMasks of `network` on each dataset/split, its TrainModel output being the packaged
    weights where the DAG has none (a marker summary says so)."""
    import shutil

    import luigi

    from models.utils import SHIPPED_MODEL
    from pipeline.predict import PredictMasks

    tasks = [PredictMasks(model=network, dataset=d, split=s) for d, s in (e.split("/") for e in sets)]
    for task in tasks:
        trained = task.requires()["model"].output()
        if not trained["model"].exists():
            Path(trained["model"].path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(SHIPPED_MODEL, trained["model"].path)
            Path(trained["summary"].path).write_text(json.dumps({"stand_in": str(SHIPPED_MODEL)}) + "\n")
    if not luigi.build(tasks, local_scheduler=True, log_level="WARNING"):
        raise SystemExit("bench/quality.py: PredictMasks failed")


def decayed_by_image(results: list[dict]) -> list[float]:
    """The COCO results' scores (their quality), in place and returned, each decayed by its mask's
    overlap with better masks of its image (models.evaluation.image_overlap_decay), as Evaluate and
    the nightly path score them."""
    from models.evaluation import image_overlap_decay

    scores = [r["score"] for r in results]
    decayed = image_overlap_decay([r["image_id"] for r in results], scores, [r["segmentation"] for r in results])
    for result, score in zip(results, decayed, strict=True):
        result["score"] = score
    return [r["score"] for r in results]


def read_dump(dump: Path) -> list[dict]:
    """The rows of a bench/nightly_quality.py --dump file."""
    return [json.loads(line) for line in dump.read_text().splitlines() if line.strip()]


def scored_rows(rows: list[dict], dataset: str) -> list[dict]:
    """posemask's masks of one dataset of a nightly dump that have a quality."""
    return [
        r for r in rows if r["dataset"] == dataset and r["method"] == "posemask" and r.get("expected_iou") is not None
    ]


def touching_rows(rows: list[dict], dataset: str) -> list[dict]:
    """scored_rows that overlap an annotated person (best_iou: their best IoU with one)."""
    return [r for r in scored_rows(rows, dataset) if r["best_iou"] > 0]


def matched_rows(rows: list[dict], dataset: str) -> list[dict]:
    """scored_rows whose box found an annotated person (matched_iou: the mask's IoU with that person)."""
    if rows and "matched_iou" not in rows[0]:
        raise SystemExit("bench/quality.py: the dump has no matched_iou: make it again with bench/nightly_quality.py")
    return [r for r in scored_rows(rows, dataset) if r["matched_iou"] is not None]


def without_keypoints(dump: Path) -> dict[str, dict]:
    """Per dataset of a nightly_quality --dump: rho and calibration table of quality against the
    true IoU of the matched masks (matched_rows); the same over the masks that touch an annotated
    person against their best IoU with one (touching_rows: how the figures were counted before
    matching by box; it takes in masks of people the set leaves unannotated, as OCHuman and
    PennFudan do, scored by a sliver of their neighbour); and rho of the score (detector x
    quality) over all masks."""
    rows = read_dump(dump)
    figures = {}
    for dataset in sorted({r["dataset"] for r in rows}):
        mine = [r for r in rows if r["dataset"] == dataset and r["method"] == "posemask"]
        scored = matched_rows(rows, dataset)
        if len(scored) < 3:
            continue
        q = np.array([r["quality"] for r in scored])
        t = np.array([r["matched_iou"] for r in scored])
        table = deciles(q, t)
        touching = touching_rows(rows, dataset)
        tq, tt = np.array([r["quality"] for r in touching]), np.array([r["best_iou"] for r in touching])
        touching_table = deciles(tq, tt)
        figures[dataset] = {
            "masks": len(scored),
            "masks_unmatched": sum(r["matched_iou"] is None for r in mine),
            "masks_without_quality": sum(r.get("quality") is None for r in mine),
            "rho": round(spearman(q, t), 3),
            "rho_expected_iou_alone": round(spearman(np.array([r["expected_iou"] for r in scored]), t), 3),
            "rho_score_all_masks": round(
                spearman(np.array([r["score"] for r in mine]), np.array([r["best_iou"] for r in mine])), 3
            ),
            "deciles": table,
            "deciles_rise": rises(table),
            "touching": {
                "masks": len(touching),
                "rho": round(spearman(tq, tt), 3),
                "deciles": touching_table,
                "deciles_rise": rises(touching_table),
            },
        }
    return figures


def fit_shipped_calibration(dump: Path, dataset: str, target: Path) -> None:
    """Fit the quality calibration on one dataset of a nightly dump (the raw quality, recomputed from
    the parts each row holds) and write it to `target`."""
    from models.evaluation import combine_quality, fit_quality_head, write_calibration

    rows = touching_rows(read_dump(dump), dataset)
    raw = np.array([combine_quality(r["expected_iou"], r["prior_agreement"]) for r in rows])
    truth = np.array([r["best_iou"] for r in rows])
    calibration = fit_quality_head(raw, [r["kind"] for r in rows], np.array([r["area_share"] for r in rows]), truth)
    write_calibration(
        target, calibration, fitted_on=f"{dataset} (bench/nightly_quality.py), {len(rows)} matched masks",
        commit=git_commit(), date=dt.date.today().isoformat(),
    )  # fmt: skip
    print(f"quality calibration of {len(rows)} {dataset} masks -> {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--sets", nargs="+", default=["coco/val", "ochuman/val"])
    parser.add_argument("--nightly-dump", type=Path, help="a bench/nightly_quality.py --dump file")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--fit-calibration", type=Path, help="write the calibration fitted on --fit-on here")
    parser.add_argument("--fit-on", default="coco128train", help="the nightly dump's validation set")
    parser.add_argument(
        "--predict-shipped", action="store_true", help="make the sets' predictions with the packaged weights"
    )
    args = parser.parse_args()
    if args.fit_calibration:
        if not args.nightly_dump:
            raise SystemExit("--fit-calibration needs --nightly-dump")
        fit_shipped_calibration(args.nightly_dump, args.fit_on, args.fit_calibration)
        return

    from pipeline.settings import load_settings
    from pipeline.train import shipped

    load_settings(args.config)
    network = shipped().network
    if args.predict_shipped:
        predict_with_shipped_weights(network, args.sets)
    figures: dict[str, dict] = {}
    for eval_set in args.sets:
        dataset, split = eval_set.split("/")
        figures[eval_set] = with_keypoints(network, dataset, split)
    if args.nightly_dump:
        figures.update({f"nightly {k}": v for k, v in without_keypoints(args.nightly_dump).items()})
    for name, f in figures.items():
        ap = f" AP {f['mask_ap_mean_probability']:.3f} -> {f['mask_ap_quality']:.3f}" if "mask_ap_quality" in f else ""
        old = f.get("rho_mean_probability", f.get("rho_expected_iou_alone"))
        print(f"{name:22s} {f['masks']:4d} masks  rho {f['rho']:.3f} (before {old:.3f}){ap}")
        steps = "  ".join(f"{d['score']:.2f}->{d['true_iou']:.2f}" for d in f["deciles"])
        print(f"    calibration (quality -> true IoU): {steps}  rises: {f['deciles_rise']}")
        if "touching" in f:
            t = f["touching"]
            print(f"    masks touching a person: {t['masks']}, rho {t['rho']:.3f}, rises: {t['deciles_rise']}")
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
