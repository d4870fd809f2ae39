"""Does the review page's worst-first order put the worst photos first? One run, two quality models.

    python bench/review_order.py --images DIR --masks DIR [--before-quality FILE] [--limit N]

For each photo of DIR with a binary person mask of the same stem in --masks (0/255, every person of
the photo; a mask smaller than its photo is resized to it, nearest), posemask finds and segments
the people as `posemask masks` does with no keypoints (the packaged defaults and model), and the
photo's IoU is the union of its masks against the true mask. The review page sorts photos by their
lowest mask quality (pipeline/lib/review.py worst_first; photos where nobody was found come first).
Figures per quality model, the shipped one (models/weights/posemask_unet/quality.json) and
--before-quality (default: the calibration shipped before the quality head,
bench/quality_calibration_b7b0faa.json), over the same masks:

  - rho: Spearman's rho between the photo's lowest quality and its IoU (photos with a person found);
  - worst tenth: the mean IoU of the first 10 % of the order, against the mean of the rest;
  - bad found: of the photos with IoU < 0.5, the share in the first 20 % of the order (a reviewer
    who looks at a fifth of the night).

Made for a folder no model here trained on (the shared `folder/` set: 290 photos with remove.bg
masks, licence unknown, so it is read from its path and never copied). Appends one JSON line to
bench/results/review_order.jsonl.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.record import append_result, git_commit  # noqa: E402

RESULTS = REPO / "bench" / "results" / "review_order.jsonl"
BEFORE_QUALITY = REPO / "bench" / "quality_calibration_b7b0faa.json"
BAD_IOU = 0.5  # a photo a reviewer should fix
LOOKED_AT = 0.2  # the share of the night a reviewer looks at, worst first


def read_truth(path: Path, hw: tuple[int, int]) -> np.ndarray:
    """(H,W) bool person mask, resized to the photo's size (nearest) when it was saved smaller."""
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise FileNotFoundError(f"bench/review_order.py: cannot read {path}")
    if mask.shape != hw:
        mask = cv2.resize(mask, (hw[1], hw[0]), interpolation=cv2.INTER_NEAREST)
    return mask >= 128


def photo_masks(comp, image: np.ndarray) -> list[dict]:
    """Every mask posemask makes for one photo: its full-size mask, RLE and the quality's parts."""
    from models.people import mask_kind, segment_people
    from models.sample import encode_rle

    people = comp.find_people(image)
    masks = segment_people(
        comp.net, image, people, comp.crop_cfg, comp.threshold,
        box_segmenter=comp.box_segmenter, box_prior=comp.box_prior,
        segmentation_weight=comp.segmentation_weight, calibration=None,
    )  # fmt: skip
    out = []
    for m in masks:
        full = m.mask
        out.append(
            {"mask": full, "rle": encode_rle(full), "eiou": m.expected_iou, "agreement": m.prior_agreement,
             "kind": mask_kind(m.person), "share": float(full.mean())}
        )  # fmt: skip
    return out


def lowest_quality(masks: list[dict], model) -> float | None:
    """The photo's lowest quality under `model` (a Calibration or QualityHead), decayed as nights do."""
    from models.evaluation import combine_quality, photo_overlap_decay

    raw = [
        None if m["eiou"] is None else combine_quality(m["eiou"], m["agreement"], model, m["kind"], m["share"])
        for m in masks
    ]
    decayed = [q for q in photo_overlap_decay(raw, [m["rle"] for m in masks]) if q is not None]
    return min(decayed) if decayed else None


def order_figures(keys: list[tuple], ious: list[float]) -> dict:
    """The order's figures: keys are worst_first-like (state, lowest quality), one per photo."""
    from scipy.stats import spearmanr

    order = sorted(range(len(keys)), key=lambda k: (keys[k], k))
    iou = np.array(ious)
    scored = [k for k in range(len(keys)) if keys[k][0] == 2]
    tenth = max(1, len(order) // 10)
    looked = set(order[: max(1, int(round(LOOKED_AT * len(order))))])
    bad = [k for k in range(len(keys)) if iou[k] < BAD_IOU]
    return {
        "rho": round(float(spearmanr([keys[k][1] for k in scored], iou[scored]).statistic), 3),
        "worst_tenth_iou": round(float(iou[order[:tenth]].mean()), 3),
        "rest_iou": round(float(iou[order[tenth:]].mean()), 3),
        "bad_photos": len(bad),
        "bad_found_in_first_fifth": round(sum(k in looked for k in bad) / max(len(bad), 1), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--masks", type=Path, required=True)
    parser.add_argument("--before-quality", type=Path, default=BEFORE_QUALITY)
    parser.add_argument("--limit", type=int, default=0, help="the first N photos only (0: all)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()

    import torch

    from models.evaluation import read_calibration
    from models.utils import SHIPPED_DIR
    from pipeline.nightly import nightly_components
    from pipeline.settings import load_settings

    load_settings(None)
    comp = nightly_components(None, None)
    torch.set_num_threads(1)
    models = {
        "shipped": read_calibration(SHIPPED_DIR / "quality.json"),
        "before": read_calibration(args.before_quality),
    }
    photos = sorted(p for p in args.images.iterdir() if (args.masks / f"{p.stem}.png").is_file())
    photos = photos[: args.limit] if args.limit else photos
    keys: dict[str, list[tuple]] = {name: [] for name in models}
    ious: list[float] = []
    for n, path in enumerate(photos):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        truth = read_truth(args.masks / f"{path.stem}.png", image.shape[:2])
        masks = photo_masks(comp, image)
        union = np.zeros(truth.shape, bool)
        for m in masks:
            union |= m["mask"]
        ious.append(float((union & truth).sum() / max((union | truth).sum(), 1)))
        for name, model in models.items():
            quality = lowest_quality(masks, model)
            keys[name].append((1, 0.0) if quality is None else (2, quality))  # nobody found: first
        print(f"\r{n + 1}/{len(photos)} photos", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    figures = {name: order_figures(k, ious) for name, k in keys.items()}
    nobody = sum(k[0] == 1 for k in keys["shipped"])
    print(f"{len(photos)} photos, mean IoU {np.mean(ious):.3f}, nobody found in {nobody}")
    for name, f in figures.items():
        print(
            f"{name:8s} rho {f['rho']:.3f}  worst tenth IoU {f['worst_tenth_iou']:.3f} (rest {f['rest_iou']:.3f})  "
            f"bad photos found in the first fifth {f['bad_found_in_first_fifth']:.2f} of {f['bad_photos']}"
        )
    append_result(
        args.results,
        {
            "bench": "review_order",
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "commit": git_commit(),
            "images": str(args.images),
            "photos": len(photos),
            "mean_iou": round(float(np.mean(ious)), 4),
            "nobody_found": nobody,
            "before_quality": str(args.before_quality),
            "figures": figures,
        },
    )


if __name__ == "__main__":
    main()
