"""Quality of the nightly path on photos with NO keypoints given, against whole-photo peers, in one run.

    python bench/nightly_quality.py                                  # the sample's val2017 + ochuman
    python bench/nightly_quality.py --dataset mine=ann.json:images/ --empty-dir photos_without_people/
    python bench/nightly_quality.py --dataset och=ann.json:images/ --unannotated och=regions.json

For every photo with ground-truth person masks (COCO instances JSON + image folder) and for
each method (posemask alone, with the dense CRF, with the GrabCut refinement, and each
whole-photo peer of models.people.peers):

  - detection recall and precision at box IoU 0.5 (posemask only: the boxes of the people it
    made masks for). People to find: non-crowd people with >= --min-keypoints labelled keypoints
    (or, in a dataset without keypoints, every non-crowd person). A box that matches another
    annotated person (crowd, fewer keypoints) is not a false positive.
  - whole-image IoU per photo with people: the union of all the method's masks against the union
    of all ground-truth people, crowd regions included; mean and median.
  - on photos without people (images of a dataset with no person annotation, and --empty-dir):
    the share that gets any mask pixel.
  - photos/s (model start-up excluded; posemask's detector + pose time is counted in both of its rows).
  - instance figures (posemask rows): for every non-crowd annotated person, whether some detector
    box overlaps it at IoU >= 0.5 ("boxed") and whether some person mask does ("masked"), by COCO
    size bucket (small < 32^2 <= medium < 96^2 <= large, by annotated area), the loss between the
    two, and COCO mask AP / AP-large of the person category (pycocotools, crowd regions ignored,
    every photo of the dataset, with and without people, in the evaluation).
  - --unannotated NAME=REGIONS.json: the people a dataset leaves unannotated (OCHuman annotates
    each photo's occluded people only; bench/data/ochuman_sample_unannotated.json lists the
    others in the sample's 13 photos), as boxes. They become crowd regions of a second mask AP
    ("unannotated people ignored": a mask of one is neither a true nor a false positive, as COCO
    scores its crowds) and boxes that are no false positive in the detection precision. The
    dataset's own AP is printed beside it, unchanged.

--before CONFIG adds a "before" row: posemask with the settings of CONFIG over the defaults
(bench/before_issue20.cfg restores the nightly path as it was before issue 20, its masks ranked
by their mean probability alone, as then; bench/box_mask_selfie.cfg segments box people with the
selfie segmenter), run on the same photos in the same process.
--compare-model MODEL.pt adds a "compare" row: today's settings with another model (for example the
previously shipped one, to measure a new shipped model against it in one run).
--overlays DIR writes, for each photo with people, the masks of posemask (and of "before") drawn
on it; --dump FILE one JSON line per detected person (its box, pose reason, mask source and best
mask IoU with a ground truth, and matched_iou: its mask IoU with the annotated person its box found
at box IoU >= 0.5, models.evaluation.box_matched_ious; null where it found nobody).

posemask runs exactly what ``posemask masks`` runs for a photo without keypoints (detector ->
pose per box -> network, GrabCut from the box when no pose is found), with the settings of the
packaged defaults (pipeline/defaults.cfg) unless --config names another file. Appends one JSON
line (commit, config, date, figures) to bench/results/nightly_quality.jsonl.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pycocotools import mask as mask_utils  # noqa: E402

from bench.record import append_result, git_commit  # noqa: E402
from models.evaluation import (  # noqa: E402
    SIZE_BUCKETS,
    box_matched_ious,
    coco_person_ap,
    overlay_people,
    people_found,
    size_bucket,
)
from models.people import (  # noqa: E402
    PEERS,
    instance_labels,
    make_peer,
    mask_kind,
    match_detections,
    segment_people,
)

SAMPLE = REPO / "data" / "sample"
DEFAULT_DATASETS = [
    f"coco-val2017={SAMPLE}/coco/annotations/person_keypoints_val2017.json:{SAMPLE}/coco/val2017",
    f"ochuman={SAMPLE}/ochuman/ochuman_coco_format_val_range_0.00_1.00.json:{SAMPLE}/ochuman/images",
]
# the people the sample's OCHuman photos leave unannotated (used with DEFAULT_DATASETS)
OCHUMAN_UNANNOTATED = REPO / "bench" / "data" / "ochuman_sample_unannotated.json"
DEFAULT_UNANNOTATED = [f"ochuman={OCHUMAN_UNANNOTATED}"]
RESULTS = REPO / "bench" / "results" / "nightly_quality.jsonl"
BOX_IOU = 0.5


@dataclass
class Photo:
    """One photo: its path, ground-truth union mask, boxes to find and boxes not to punish."""

    dataset: str
    path: Path
    gt_union: np.ndarray
    find: np.ndarray
    ignore: np.ndarray
    image: dict = field(default_factory=dict)  # COCO image entry {id, height, width}
    people: list[dict] = field(default_factory=list)  # COCO annotations, segmentation as compressed RLE
    unannotated: list[dict] = field(default_factory=list)  # --unannotated people, as crowd annotations


@dataclass
class Tally:
    """One method's figures over all photos."""

    ious: list[float] = field(default_factory=list)
    empty_with_mask: int = 0
    empty_photos: int = 0
    true_pos: int = 0
    false_pos: int = 0
    to_find: int = 0
    seconds: float = 0.0
    photos: int = 0
    # instance figures: per size bucket [people, boxed, masked]; COCO images, annotations, results
    buckets: dict[str, list[int]] = field(default_factory=lambda: {b: [0, 0, 0] for b in SIZE_BUCKETS})
    coco_images: list[dict] = field(default_factory=list)
    coco_people: list[dict] = field(default_factory=list)
    coco_results: list[dict] = field(default_factory=list)
    # the same masks ranked by their confidence, the score before quality (issue 23's "old score")
    confidence_results: list[dict] = field(default_factory=list)
    # --unannotated people as crowd annotations (a second AP: coco_people + these)
    coco_unannotated: list[dict] = field(default_factory=list)
    instances: bool = False

    def instance_summary(self) -> dict:
        out: dict = {}
        for bucket, (people, boxed, masked) in self.buckets.items():
            if people:
                out[bucket] = {
                    "people": people,
                    "box_recall": round(boxed / people, 4),
                    "mask_recall": round(masked / people, 4),
                    "loss": round((boxed - masked) / people, 4),
                }
        ap = coco_person_ap(self.coco_images, self.coco_people, self.coco_results)
        out["mask_ap"] = {k: round(v, 4) for k, v in ap.items()}
        if self.confidence_results:
            ap = coco_person_ap(self.coco_images, self.coco_people, self.confidence_results)
            out["mask_ap_confidence"] = {k: round(v, 4) for k, v in ap.items()}
        if self.coco_unannotated:
            # a set that leaves people unannotated (OCHuman) counts a good mask of one as a false
            # positive, whatever its score: as COCO's crowds, they are ignored in this one
            people = self.coco_people + self.coco_unannotated
            for key, results in (
                ("mask_ap_unannotated_ignored", self.coco_results),
                ("mask_ap_confidence_unannotated_ignored", self.confidence_results),
            ):
                if results:
                    ap = coco_person_ap(self.coco_images, people, results)
                    out[key] = {k: round(v, 4) for k, v in ap.items()}
        return out

    def summary(self) -> dict:
        out = {"photos": self.photos, "photos_per_s": round(self.photos / max(self.seconds, 1e-9), 3)}
        if self.instances:
            out["instances"] = self.instance_summary()
        if self.ious:
            out.update(
                mean_iou=round(float(np.mean(self.ious)), 4),
                median_iou=round(float(np.median(self.ious)), 4),
                photos_with_people=len(self.ious),
            )
        if self.to_find:
            out.update(
                recall=round(self.true_pos / self.to_find, 4),
                precision=round(self.true_pos / max(self.true_pos + self.false_pos, 1), 4),
                people_to_find=self.to_find,
                false_positives=self.false_pos,
            )
        if self.empty_photos:
            out.update(
                empty_photos=self.empty_photos, empty_with_mask_share=round(self.empty_with_mask / self.empty_photos, 4)
            )
        return out


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"bench/nightly_quality.py: cannot read {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_unannotated(path: Path) -> dict[str, list[dict]]:
    """A --unannotated file ({"regions": [{file_name, width, height, bbox (xywh), who}, ...]}) ->
    file name -> its regions."""
    by_name: dict[str, list[dict]] = {}
    for region in json.loads(Path(path).read_text())["regions"]:
        by_name.setdefault(region["file_name"], []).append(region)
    return by_name


def unannotated_regions(regions: list[dict], image: dict, h: int, w: int) -> list[dict]:
    """One photo's --unannotated regions as COCO crowd annotations (the box as an RLE mask)."""
    out = []
    for region in regions:
        if (region["height"], region["width"]) != (h, w):
            raise SystemExit(
                f"bench/nightly_quality.py: --unannotated names {image['file_name']} at "
                f"{region['width']}x{region['height']}, but that photo is {w}x{h}: another photo of that name?"
            )
        x, y, bw, bh = (float(v) for v in region["bbox"])
        if bw <= 0 or bh <= 0 or x < 0 or y < 0 or x + bw > w + 0.5 or y + bh > h + 0.5:
            where = image["file_name"]
            raise SystemExit(f"bench/nightly_quality.py: --unannotated box {region['bbox']} leaves {where}")
        rle = mask_utils.merge(mask_utils.frPyObjects([[x, y, x + bw, y, x + bw, y + bh, x, y + bh]], h, w))
        out.append({"bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 1, "category_id": 1, "segmentation": rle})
    return out


def load_dataset(spec: str, min_keypoints: int, unannotated: dict[str, list[dict]] | None = None) -> list[Photo]:
    """NAME=ANNOTATIONS.json:IMAGES_DIR -> one Photo per image of the file (with or without people);
    unannotated: load_unannotated's regions of this dataset's photos (None: none)."""
    name, _, rest = spec.partition("=")
    annotations, _, images = rest.rpartition(":")
    data = json.loads(Path(annotations).read_text())
    # a file whose people carry no keypoints at all (instances format): every non-crowd person is to find
    has_keypoints = any(a.get("num_keypoints", 0) > 0 for a in data["annotations"])
    by_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        if ann.get("category_id", 1) == 1:
            by_image.setdefault(ann["image_id"], []).append(ann)
    unannotated = unannotated or {}
    unknown = sorted(set(unannotated) - {image["file_name"] for image in data["images"]})
    if unknown:
        raise SystemExit(f"bench/nightly_quality.py: --unannotated for {name} names photos not in it: {unknown}")
    photos = []
    for image in data["images"]:
        path = Path(images) / image["file_name"]
        if not path.is_file():
            continue
        h, w = int(image["height"]), int(image["width"])
        anns = by_image.get(image["id"], [])
        union = np.zeros((h, w), bool)
        people = []
        for ann in anns:
            seg = ann["segmentation"]
            if isinstance(seg, list):
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
            elif isinstance(seg["counts"], list):
                rle = mask_utils.frPyObjects(seg, h, w)
            else:
                rle = dict(
                    seg, counts=seg["counts"].encode("ascii") if isinstance(seg["counts"], str) else seg["counts"]
                )
            union |= mask_utils.decode(rle).astype(bool)
            area = float(ann.get("area") or mask_utils.area(rle))
            people.append({**ann, "segmentation": rle, "area": area, "iscrowd": int(ann.get("iscrowd", 0))})

        def findable(a: dict) -> bool:
            return not a.get("iscrowd", 0) and (not has_keypoints or a.get("num_keypoints", 0) >= min_keypoints)

        others = unannotated_regions(unannotated.get(image["file_name"], []), image, h, w)
        find = np.array([a["bbox"] for a in anns if findable(a)], np.float32).reshape(-1, 4)
        ignore = np.array([a["bbox"] for a in anns + others if not findable(a)], np.float32).reshape(-1, 4)
        entry = {"id": int(image["id"]), "height": h, "width": w}
        photos.append(Photo(name, path, union, find, ignore, entry, people, others))
    return photos


def empty_photos(folder: Path) -> list[Photo]:
    exts = {".jpg", ".jpeg", ".png"}
    return [
        Photo("empty", p, np.zeros((0, 0), bool), np.zeros((0, 4)), np.zeros((0, 4)))
        for p in sorted(folder.iterdir())
        if p.suffix.lower() in exts
    ]


def whole_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    union = np.logical_or(pred, gt).sum()
    return float(np.logical_and(pred, gt).sum() / union) if union else 1.0


def score(tally: Tally, photo: Photo, union: np.ndarray, boxes: np.ndarray | None, seconds: float) -> None:
    tally.photos += 1
    tally.seconds += seconds
    if not photo.gt_union.any():  # no person annotated (or a photo of --empty-dir)
        tally.empty_photos += 1
        tally.empty_with_mask += int(union.any())
        return
    tally.ious.append(whole_iou(union, photo.gt_union))
    if boxes is not None:
        tp, fp, n = match_detections(boxes, photo.find, photo.ignore, BOX_IOU)
        tally.true_pos, tally.false_pos, tally.to_find = tally.true_pos + tp, tally.false_pos + fp, tally.to_find + n


@dataclass
class PhotoInstances:
    """One method's instance figures on one photo, made once and added to every tally it counts
    in (the photo's dataset and "all"): COCO results and annotations, (size bucket, boxed, masked)
    per non-crowd person, each mask's best IoU with one of them and its IoU with the person its box
    found (NaN: nobody; both for --dump), and the --unannotated people as crowd annotations."""

    results: list[dict]
    confidence_results: list[dict]
    annotations: list[dict]
    found: list[tuple[str, bool, bool]]
    best_iou: list[float]
    matched_iou: list[float]
    unannotated: list[dict]


def photo_instances(photo: Photo, masks: list, next_id: list[int], mask_only_score: bool = False) -> PhotoInstances:
    """The instance figures of posemask's PersonMasks on `photo`. mask_only_score: rank by the
    mean mask probability alone (the score before issue 20: models.people.mask_score without the
    detector's factor, recovered by dividing it out; box people segmented in their box kept the
    detector's score then and now)."""
    rles = [mask_utils.encode(np.asfortranarray(m.mask.astype(np.uint8))) for m in masks]
    pred_boxes = np.array([m.person.bbox for m in masks], np.float32).reshape(-1, 4)
    results, confidence_results = [], []
    for m, rle in zip(masks, rles, strict=True):
        score = m.score
        if mask_only_score and m.person.detection_score and m.person.source == "keypoints":
            score = m.confidence / m.person.detection_score  # box people were ranked by the detector's score
        results.append({"image_id": photo.image["id"], "segmentation": rle, "score": float(score)})
        confidence = m.confidence if m.confidence is not None else m.score
        confidence_results.append({**results[-1], "score": float(confidence)})
    annotations = []
    for ann in photo.people:
        next_id[0] += 1
        annotations.append({**ann, "id": next_id[0], "image_id": photo.image["id"]})
    people = [a for a in photo.people if not a["iscrowd"]]
    gt_boxes = np.array([a["bbox"] for a in people], np.float32).reshape(-1, 4)
    gt_rles = [a["segmentation"] for a in people]
    boxed, masked = people_found(gt_boxes, gt_rles, pred_boxes, rles, BOX_IOU)
    found = [(size_bucket(a["area"]), bool(b), bool(m)) for a, b, m in zip(people, boxed, masked, strict=True)]
    mask_ious = np.zeros((len(rles), len(gt_rles)))
    if rles and gt_rles:
        mask_ious = np.asarray(mask_utils.iou(rles, gt_rles, [0] * len(gt_rles)))
    best = mask_ious.max(axis=1).tolist() if gt_rles else [0.0] * len(rles)
    matched = box_matched_ious(pred_boxes, gt_boxes, mask_ious, BOX_IOU).tolist()
    unannotated = []
    for region in photo.unannotated:
        next_id[0] += 1
        unannotated.append({**region, "id": next_id[0], "image_id": photo.image["id"]})
    return PhotoInstances(results, confidence_results, annotations, found, best, matched, unannotated)


def add_instances(tally: Tally, photo: Photo, instances: PhotoInstances) -> None:
    """Count one photo's PhotoInstances in `tally`."""
    tally.instances = True
    tally.coco_images.append(photo.image)
    tally.coco_results += instances.results
    tally.confidence_results += instances.confidence_results
    tally.coco_people += instances.annotations
    tally.coco_unannotated += instances.unannotated
    for bucket, boxed, masked in instances.found:
        counts = tally.buckets[bucket]
        counts[0], counts[1], counts[2] = counts[0] + 1, counts[1] + int(boxed), counts[2] + int(masked)


def write_overlay(folder: Path, photo: Photo, image: np.ndarray, method: str, masks: list) -> None:
    labels = [f"{k} {m.person.pose_reason or m.person.source} {m.score:.2f}" for k, m in enumerate(masks)]
    keypoints = [m.person.keypoints if m.person.source == "keypoints" else None for m in masks]
    drawn = overlay_people(image, [m.mask for m in masks], keypoints, [m.person.bbox for m in masks], labels)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{photo.dataset}-{photo.path.stem}-{method}.jpg"
    cv2.imwrite(str(target), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--dataset",
        action="append",
        metavar="NAME=ANNOTATIONS.json:IMAGES_DIR",
        help="photos with ground-truth person masks (repeatable; default: the sample's val2017 and ochuman)",
    )
    parser.add_argument(
        "--unannotated",
        action="append",
        metavar="NAME=REGIONS.json",
        help="people dataset NAME leaves unannotated, as boxes (repeatable; default with the default datasets: "
        "bench/data/ochuman_sample_unannotated.json for ochuman)",
    )
    parser.add_argument("--empty-dir", type=Path, help="a folder of photos without people")
    parser.add_argument("--model", default="", help="model.pt (default: the packaged model)")
    parser.add_argument("--crf", default="", help="crf.json for --model (default: the packaged crf.json)")
    parser.add_argument("--config", default="", help="a luigi.cfg whose settings override the packaged defaults")
    parser.add_argument("--min-keypoints", type=int, default=8, help="people to find have at least this many")
    parser.add_argument("--peers", nargs="*", default=sorted(PEERS), help="whole-photo peers to compare")
    parser.add_argument("--no-crf", action="store_true", help="skip the posemask+crf row")
    parser.add_argument("--no-grabcut", action="store_true", help="skip the posemask+grabcut row")
    parser.add_argument("--before", default="", help="a .cfg: add a 'before' row with its settings over the defaults")
    parser.add_argument(
        "--compare-model", default="", help="model.pt: add a 'compare' row, today's settings with this model"
    )
    parser.add_argument("--compare-crf", default="", help="crf.json for --compare-model (default: --crf's)")
    parser.add_argument("--overlays", type=Path, help="write each photo's posemask (and before) masks drawn on it here")
    parser.add_argument("--dump", type=Path, help="one JSON line per detected person to this file")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()

    from pipeline.crf import read_crf_file
    from pipeline.nightly import nightly_components
    from pipeline.settings import load_settings, settings_overridden_by

    load_settings(args.config or None)
    crf_params = read_crf_file(args.crf) if args.crf else None
    comp = nightly_components(args.model or None, crf_params)
    dataset_specs = args.dataset or DEFAULT_DATASETS
    unannotated_specs = args.unannotated or ([] if args.dataset else DEFAULT_UNANNOTATED)
    regions = {}
    for spec in unannotated_specs:
        name, _, path = spec.partition("=")
        regions[name] = load_unannotated(Path(path))
    names = [spec.partition("=")[0] for spec in dataset_specs]
    if set(regions) - set(names):
        raise SystemExit(f"--unannotated names datasets not given: {sorted(set(regions) - set(names))}")
    photos = [
        p
        for spec, name in zip(dataset_specs, names, strict=True)
        for p in load_dataset(spec, args.min_keypoints, regions.get(name))
    ]
    if args.empty_dir:
        photos += empty_photos(args.empty_dir)
    for k, photo in enumerate(photos):  # ids unique over every dataset (the "all" rows pool them)
        photo.image["id"] = k + 1
    torch.set_num_threads(1)

    # posemask variants: name -> (components, dense CRF, GrabCut refinement)
    variants = {
        "posemask": (comp, False, False),
        "posemask+crf": (comp, True, False),
        "posemask+grabcut": (comp, False, True),
    }
    if args.no_crf:
        variants.pop("posemask+crf")
    if args.no_grabcut:
        variants.pop("posemask+grabcut")
    if args.before:
        with settings_overridden_by(args.before):
            variants["before"] = (nightly_components(args.model or None, crf_params), False, False)
    if args.compare_model:
        compare_crf = read_crf_file(args.compare_crf) if args.compare_crf else crf_params
        variants["compare"] = (nightly_components(args.compare_model, compare_crf), False, False)
    with_overlays = {"posemask", "before", "compare"}
    # bench/before_issue20.cfg restores the ranking before issue 20 too (mean mask probability alone)
    ranks_by_mask_alone = bool(args.before) and Path(args.before).name == "before_issue20.cfg"
    methods = list(variants) + list(args.peers)
    datasets = list(dict.fromkeys(p.dataset for p in photos)) + ["all"]
    tallies = {(d, m): Tally() for d in datasets for m in methods}
    peers = {name: make_peer(name) for name in args.peers}
    warm = read_rgb(photos[0].path)
    for peer in peers.values():
        peer.segment(warm)
    for c in {id(v[0]): v[0] for v in variants.values()}.values():
        c.find_people(warm)
    ann_ids = [0]
    dump = args.dump.open("w") if args.dump else None

    def count(photo: Photo, method: str, union: np.ndarray, boxes: np.ndarray | None, seconds: float) -> None:
        for dataset in (photo.dataset, "all"):
            score(tallies[(dataset, method)], photo, union, boxes, seconds)

    for n, photo in enumerate(photos):
        image = read_rgb(photo.path)
        photo.image.update(height=image.shape[0], width=image.shape[1])
        found: dict[int, tuple[list, float]] = {}  # id(components) -> (people, seconds to find them)
        for method, (c, crf, grabcut) in variants.items():
            if id(c) not in found:
                start = time.perf_counter()
                people = c.find_people(image)
                found[id(c)] = (people, time.perf_counter() - start)
            people, find_s = found[id(c)]
            boxes = np.array([[*p.bbox, p.detection_score or 0.0] for p in people], np.float32).reshape(-1, 5)
            start = time.perf_counter()
            masks = segment_people(
                c.net,
                image,
                people,
                c.crop_cfg,
                c.threshold,
                c.crf if crf else None,
                grabcut=grabcut,
                box_segmenter=c.box_segmenter,
                box_prior=c.box_prior,
                segmentation_weight=c.segmentation_weight,
                calibration=c.calibration,
            )
            union = np.zeros(image.shape[:2], bool)
            if masks:
                union = instance_labels([m.prob for m in masks], c.threshold) > 0
            count(photo, method, union, boxes, find_s + time.perf_counter() - start)
            instances = photo_instances(photo, masks, ann_ids, method == "before" and ranks_by_mask_alone)
            for dataset in (photo.dataset, "all"):
                add_instances(tallies[(dataset, method)], photo, instances)
            if dump is not None:
                for k, (m, iou, matched) in enumerate(
                    zip(masks, instances.best_iou, instances.matched_iou, strict=True)
                ):
                    row = {"method": method, "dataset": photo.dataset, "photo": photo.path.name, "person": k}
                    row.update(bbox=[round(float(v), 1) for v in m.person.bbox], source=m.person.source)
                    row.update(pose_reason=m.person.pose_reason, score=round(m.score, 4), best_iou=round(iou, 4))
                    row.update(matched_iou=None if np.isnan(matched) else round(matched, 4))
                    parts = {"quality": m.quality, "expected_iou": m.expected_iou, "prior_agreement": m.prior_agreement}
                    row.update({k: None if v is None else round(v, 4) for k, v in parts.items()})
                    row.update(detection_score=m.person.detection_score, image_id=photo.image["id"])
                    rle = instances.results[k]["segmentation"]
                    row.update(segmentation={"size": rle["size"], "counts": rle["counts"].decode("ascii")})
                    share = float(mask_utils.area(rle)) / float(rle["size"][0] * rle["size"][1])
                    row.update(kind=mask_kind(m.person), area_share=round(share, 8))
                    dump.write(json.dumps(row) + "\n")
            if args.overlays and method in with_overlays and photo.people:
                write_overlay(args.overlays, photo, image, method, masks)
        for name, peer in peers.items():
            start = time.perf_counter()
            union = peer.segment(image) >= comp.threshold
            count(photo, name, union, None, time.perf_counter() - start)
        print(f"\r{n + 1}/{len(photos)} photos", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    if dump is not None:
        dump.close()

    figures = {d: {m: tallies[(d, m)].summary() for m in methods} for d in datasets}
    header = ("dataset", "method", "photos", "mean IoU", "median", "recall", "precis.", "empty>0", "photos/s")
    print("{:14s} {:17s} {:>6s} {:>9s} {:>7s} {:>7s} {:>7s} {:>8s} {:>9s}".format(*header))
    nan = float("nan")
    for dataset, by_method in figures.items():
        for method, f in by_method.items():
            print(
                f"{dataset:14s} {method:17s} {f['photos']:6d} {f.get('mean_iou', nan):9.3f} "
                f"{f.get('median_iou', nan):7.3f} {f.get('recall', nan):7.3f} {f.get('precision', nan):7.3f} "
                f"{f.get('empty_with_mask_share', nan):8.3f} {f['photos_per_s']:9.2f}"
            )
    print()
    print("instances: box / mask recall at IoU 0.5 by size (loss = box - mask), COCO mask AP (person)")
    for dataset, by_method in figures.items():
        for method, f in by_method.items():
            if "instances" not in f:
                continue
            inst = f["instances"]
            cells = [
                f"{b} {i['box_recall']:.2f}/{i['mask_recall']:.2f} (loss {i['loss']:+.2f}, {i['people']})"
                for b, i in ((b, inst[b]) for b in SIZE_BUCKETS if b in inst)
            ]
            ap, old = inst["mask_ap"], inst.get("mask_ap_confidence")
            by_confidence = f" (by confidence {old['AP']:.3f})" if old else ""
            if "mask_ap_unannotated_ignored" in inst:
                fair = inst["mask_ap_unannotated_ignored"]["AP"]
                fair_old = inst.get("mask_ap_confidence_unannotated_ignored", {}).get("AP", float("nan"))
                by_confidence += f" [unannotated people ignored: {fair:.3f} ({fair_old:.3f})]"
            print(
                f"{dataset:14s} {method:17s} {'  '.join(cells)}  AP {ap['AP']:.3f}{by_confidence} "
                f"AP-large {ap['AP_large']:.3f}"
            )
    line = {
        "bench": "nightly_quality",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "model": comp.model_path,
        "settings": comp.describe(),
        "before": {"config": args.before, "settings": variants["before"][0].describe()} if args.before else None,
        "compare": {"model": args.compare_model, "crf": args.compare_crf} if args.compare_model else None,
        "datasets": dataset_specs,
        "unannotated": unannotated_specs,
        "empty_dir": str(args.empty_dir or ""),
        "figures": figures,
    }
    append_result(args.results, line)


if __name__ == "__main__":
    main()
