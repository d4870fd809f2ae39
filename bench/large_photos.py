"""Large group photos: is a 3000x2000 photo of many people ever silently empty?

    python bench/large_photos.py [--grid 4] [--size 3000x2000] [--empty-from ann.json:images/]

Builds large "group photos" from the real photos of the sample (COCO val2017 and OCHuman, with
their person annotations): each canvas of --size holds --grid x --grid of them, letterboxed into
its cells, so that every person is --grid times smaller relative to the photo than in the
original, as in a wide group shot. Runs the detector ([detect] settings) on every canvas in
variants: the whole-photo pass alone (the default before issue 22), tiles always
(yolox_tile_above), and tiles only when the whole-photo pass finds nobody (yolox_tile_when_empty).
Figures: people boxed at IoU >= 0.5 (non-crowd people at least --min-height px tall on the
canvas), canvases where nobody is found although people are there ("silently empty"), false
boxes, and ms per canvas; with --empty-from, the same on large canvases of its person-free photos
(boxes there are false). Appends one JSON line to bench/results/large_photos.jsonl.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.record import append_result, git_commit  # noqa: E402
from models.people import (  # noqa: E402
    PersonDetector,
    match_detections,
)

RESULTS = REPO / "bench" / "results" / "large_photos.jsonl"
SAMPLE = REPO / "data" / "sample"
SETS = (
    (SAMPLE / "coco" / "annotations" / "person_keypoints_val2017.json", SAMPLE / "coco" / "val2017"),
    (SAMPLE / "ochuman" / "ochuman_coco_format_val_range_0.00_1.00.json", SAMPLE / "ochuman" / "images"),
)


def real_photos() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(RGB image, boxes of non-crowd people (N,4), crowd boxes (M,4)) of every sample photo with people."""
    out = []
    for annotation_file, images in SETS:
        data = json.loads(annotation_file.read_text())
        by_image: dict[int, list[dict]] = {}
        for a in data["annotations"]:
            by_image.setdefault(a["image_id"], []).append(a)
        for im in data["images"]:
            anns = by_image.get(im["id"], [])
            people = np.array([a["bbox"] for a in anns if not a.get("iscrowd")], np.float32).reshape(-1, 4)
            crowd = np.array([a["bbox"] for a in anns if a.get("iscrowd")], np.float32).reshape(-1, 4)
            image = cv2.imread(str(images / im["file_name"]))
            if image is not None and len(people):
                out.append((cv2.cvtColor(image, cv2.COLOR_BGR2RGB), people, crowd))
    return out


def paste(canvas: np.ndarray, photo: tuple, scale: float, corner: tuple[int, int], people: list, crowd: list) -> None:
    """Draw `photo` (image, people boxes, crowd boxes) scaled by `scale` with its top-left at
    `corner` on `canvas`, and append its boxes, moved there, to `people` and `crowd`."""
    image, boxes, crowd_boxes = photo
    resized = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    x0, y0 = corner
    canvas[y0 : y0 + resized.shape[0], x0 : x0 + resized.shape[1]] = resized
    for found, target in ((boxes, people), (crowd_boxes, crowd)):
        moved = found * scale
        moved[:, :2] += (x0, y0)
        target.append(moved)


def canvases(
    photos: list, size: tuple[int, int], grid: int, count: int = 0, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Canvases of `size` (W, H), each holding grid x grid photos letterboxed into its cells (grey
    elsewhere), with the photos' boxes moved onto it: the photos in order, or `count` canvases
    of photos drawn at random (seeded) when count > 0."""
    width, height = size
    cell_w, cell_h = width // grid, height // grid
    rng = np.random.default_rng(seed)
    n = grid * grid
    if count > 0:
        picks = [list(rng.choice(len(photos), n, replace=len(photos) < n)) for _ in range(count)]
    else:
        picks = [list(range(s, s + n)) for s in range(0, len(photos) - n + 1, n)]
    out = []
    for pick in picks:
        canvas = np.full((height, width, 3), 114, np.uint8)
        people, crowd = [], []
        for k, photo in enumerate(photos[i] for i in pick):
            image = photo[0]
            scale = min(cell_w / image.shape[1], cell_h / image.shape[0])
            paste(canvas, photo, scale, ((k % grid) * cell_w, (k // grid) * cell_h), people, crowd)
        out.append((canvas, np.concatenate(people), np.concatenate(crowd)))
    return out


SPARSE_SPOTS = ((0.03, 0.45), (0.43, 0.1), (0.77, 0.75))  # where a sparse canvas's photos go (x, y share)


def sparse_canvases(photos: list, size: tuple[int, int], side: int) -> list:
    """Canvases of `size` holding 3 photos each, scaled to `side` px on their longer side at
    SPARSE_SPOTS: a wide shot of a few small groups, whose people a whole-photo pass shrinks below
    its reach (the photos in order, 3 per canvas)."""
    width, height = size
    out = []
    for start in range(0, len(photos) - 2, 3):
        canvas = np.full((height, width, 3), 114, np.uint8)
        people, crowd = [], []
        for (fx, fy), photo in zip(SPARSE_SPOTS, photos[start : start + 3], strict=True):
            scale = side / max(photo[0].shape[:2])
            paste(canvas, photo, scale, (int(fx * width), int(fy * height)), people, crowd)
        out.append((canvas, np.concatenate(people), np.concatenate(crowd)))
    return out


def run_variant(detector: PersonDetector, sheets: list, min_height: float) -> dict:
    found = to_find = false = empty_with_people = 0
    seconds = 0.0
    for canvas, people, crowd in sheets:
        start = time.perf_counter()
        boxes = detector.detect(canvas)
        seconds += time.perf_counter() - start
        tall = people[people[:, 3] >= min_height]
        ignore = np.concatenate([crowd, people[people[:, 3] < min_height]])
        tp, fp, n = match_detections(boxes, tall, ignore, 0.5)
        found, false, to_find = found + tp, false + fp, to_find + n
        empty_with_people += int(len(boxes) == 0 and len(tall) > 0)
    return {
        "canvases": len(sheets),
        "people": to_find,
        "recall": round(found / max(to_find, 1), 3),
        "false_boxes": false,
        "silently_empty": empty_with_people,
        "ms_per_canvas": round(1000 * seconds / max(len(sheets), 1), 1),
    }


def empty_canvases(spec: str, size: tuple[int, int], grid: int, count: int) -> list:
    """Canvases of the photos of a COCO dataset ("annotations.json:images/") that have no annotation."""
    annotation_file, images = (Path(p) for p in spec.split(":", 1))
    data = json.loads(annotation_file.read_text())
    annotated = {a["image_id"] for a in data["annotations"]}
    photos = []
    for im in data["images"]:
        image = cv2.imread(str(images / im["file_name"])) if im["id"] not in annotated else None
        if image is not None:
            photos.append((cv2.cvtColor(image, cv2.COLOR_BGR2RGB), np.zeros((0, 4), np.float32), np.zeros((0, 4))))
    return canvases(photos, size, grid, count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=int, default=4, help="photos per canvas side")
    parser.add_argument(
        "--sparse", type=int, default=0, metavar="SIDE", help="instead: 3 photos of SIDE px per canvas (small groups)"
    )
    parser.add_argument("--size", default="3000x2000", help="canvas W x H")
    parser.add_argument("--canvases", type=int, default=20, help="canvases of photos drawn at random (0: in order)")
    parser.add_argument("--min-height", type=float, default=32.0, help="people to find are at least this tall")
    parser.add_argument("--tile-grids", type=int, nargs="+", default=[2, 3], help="tile grids to measure")
    parser.add_argument(
        "--empty-from", help="ANNOTATIONS.json:IMAGES/: its photos without annotations, on canvases (false boxes)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    from pipeline.config import detect

    base = detect().detector_config()
    above = max(width, height) - 1
    variants = {"whole photo": dataclasses.replace(base, yolox_tile_above=0, yolox_tile_when_empty=0)}
    for g in args.tile_grids:
        variants[f"tiles {g}x{g} always"] = dataclasses.replace(
            base, yolox_tile_above=above, yolox_tile_when_empty=0, yolox_tile_grid=g
        )
        variants[f"tiles {g}x{g} when empty"] = dataclasses.replace(
            base, yolox_tile_above=0, yolox_tile_when_empty=above, yolox_tile_grid=g
        )
    photos = real_photos()
    sheets = (
        sparse_canvases(photos, (width, height), args.sparse)
        if args.sparse
        else canvases(photos, (width, height), args.grid, args.canvases)
    )
    empties = empty_canvases(args.empty_from, (width, height), args.grid, args.canvases) if args.empty_from else []
    figures = {}
    for name, cfg in variants.items():
        detector = PersonDetector("yolox", cfg)
        detector.detect(sheets[0][0])  # warm-up
        figures[name] = run_variant(detector, sheets, args.min_height)
        if empties:
            figures[name]["empty_canvases"] = run_variant(detector, empties, args.min_height)
        f = figures[name]
        extra = f"  false boxes on person-free canvases {f['empty_canvases']['false_boxes']}" if empties else ""
        print(
            f"{name:22s} recall {f['recall']:.3f} of {f['people']}  silently empty {f['silently_empty']}/"
            f"{f['canvases']}  false boxes {f['false_boxes']}  {f['ms_per_canvas']:.0f} ms{extra}"
        )
    append_result(
        args.results,
        {
            "bench": "large_photos",
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "commit": git_commit(),
            "size": [width, height],
            "grid": args.grid,
            "sparse": args.sparse,
            "min_height": args.min_height,
            "detector": dataclasses.asdict(base),
            "figures": figures,
        },
    )


if __name__ == "__main__":
    main()
