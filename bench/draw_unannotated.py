"""Draw a dataset's annotated people and its --unannotated regions, to check the regions by eye.

    python bench/draw_unannotated.py                       # the OCHuman sample -> docs/ochuman_unannotated.jpg
    python bench/draw_unannotated.py --annotations a.json --images dir/ --regions r.json --out check.jpg

Each photo at 300 px high: the annotated people's masks tinted green, each region of the regions
file (bench/nightly_quality.py --unannotated) a magenta box; the photos in rows, by file name.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

REPO = Path(__file__).resolve().parents[1]
OCHUMAN = REPO / "data" / "sample" / "ochuman"
TILE_HEIGHT = 300
ROW_WIDTH = 1250


def decode(segmentation: list | dict, h: int, w: int) -> np.ndarray:
    """A COCO segmentation (polygons, uncompressed or compressed RLE) -> (h, w) uint8 mask."""
    if isinstance(segmentation, list):
        return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(segmentation, h, w)))
    if isinstance(segmentation["counts"], list):
        return mask_utils.decode(mask_utils.frPyObjects(segmentation, h, w))
    return mask_utils.decode(segmentation)


def draw_photo(path: Path, masks: list[np.ndarray], boxes: list[list[float]]) -> np.ndarray:
    """One tile: (TILE_HEIGHT, w', 3) BGR, the masks tinted green, the boxes (xywh) in magenta."""
    image = cv2.imread(str(path))
    tinted = image.copy()
    for mask in masks:
        tinted[mask > 0] = (0, 200, 0)
    image = (0.55 * image + 0.45 * tinted).astype(np.uint8)
    scale = TILE_HEIGHT / image.shape[0]
    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    for x, y, w, h in boxes:
        top_left, bottom_right = (int(x * scale), int(y * scale)), (int((x + w) * scale), int((y + h) * scale))
        cv2.rectangle(image, top_left, bottom_right, (255, 0, 255), 2)
    cv2.rectangle(image, (0, 0), (62, 20), (0, 0, 0), -1)
    cv2.putText(image, path.stem[:8], (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    return image


def rows_of(tiles: list[np.ndarray]) -> np.ndarray:
    """Tiles of equal height in rows of at most ROW_WIDTH px, padded white to the widest row."""
    rows: list[list[np.ndarray]] = [[]]
    for tile in tiles:
        if rows[-1] and sum(t.shape[1] for t in rows[-1]) + tile.shape[1] > ROW_WIDTH:
            rows.append([])
        rows[-1].append(tile)
    width = max(sum(t.shape[1] for t in row) for row in rows)
    white = (255, 255, 255)
    return np.vstack(
        [
            cv2.copyMakeBorder(
                np.hstack(row), 0, 0, 0, width - sum(t.shape[1] for t in row), cv2.BORDER_CONSTANT, value=white
            )
            for row in rows
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", type=Path, default=OCHUMAN / "ochuman_coco_format_val_range_0.00_1.00.json")
    parser.add_argument("--images", type=Path, default=OCHUMAN / "images")
    parser.add_argument("--regions", type=Path, default=REPO / "bench" / "data" / "ochuman_sample_unannotated.json")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "ochuman_unannotated.jpg")
    args = parser.parse_args()
    data = json.loads(args.annotations.read_text())
    regions = json.loads(args.regions.read_text())["regions"]
    tiles = []
    for image in sorted(data["images"], key=lambda i: i["file_name"]):
        h, w = int(image["height"]), int(image["width"])
        masks = [decode(a["segmentation"], h, w) for a in data["annotations"] if a["image_id"] == image["id"]]
        boxes = [r["bbox"] for r in regions if r["file_name"] == image["file_name"]]
        tiles.append(draw_photo(args.images / image["file_name"], masks, boxes))
    cv2.imwrite(str(args.out), rows_of(tiles), [cv2.IMWRITE_JPEG_QUALITY, 80])
    print(f"{len(tiles)} photos, {len(regions)} regions -> {args.out}")


if __name__ == "__main__":
    main()
