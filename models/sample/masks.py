"""Ground-truth masks from COCO annotations and VOC PNGs, as binary (H,W) uint8 arrays."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

VOC_PERSON_CLASS = 15
VOC_VOID = 255


# Polygon vertices farther than this many image sizes outside the image are not an annotation:
# pycocotools rasterises the whole polygon and huge coordinates exhaust memory or crash it.
MAX_POLYGON_REACH = 4
MAX_MASK_SIDE = 1 << 16


def check_image_size(height: object, width: object) -> tuple[int, int]:
    """(height, width) as ints, or ValueError when they are not positive integers <= 65536."""
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_MASK_SIDE for v in (height, width)):
        raise ValueError(f"image size {height}x{width} is not two integers in 1..{MAX_MASK_SIDE}")
    return int(height), int(width)


def check_polygons(polygons: list, height: int, width: int) -> list[list[float]]:
    """COCO polygons, each a flat [x0, y0, x1, y1, ...] list of >= 3 finite vertices within reach of
    the image; ValueError names the first problem (never reaches pycocotools)."""
    if not polygons:
        raise ValueError("empty polygon list")
    reach = MAX_POLYGON_REACH * max(height, width)
    checked = []
    for k, polygon in enumerate(polygons):
        if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
            raise ValueError(f"polygon {k} is not a flat list of >= 3 (x, y) vertices")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in polygon):
            raise ValueError(f"polygon {k} holds non-numbers")
        values = np.asarray(polygon, np.float64)
        if not np.isfinite(values).all():
            raise ValueError(f"polygon {k} has non-finite coordinates")
        if np.abs(values).max() > reach:
            raise ValueError(
                f"polygon {k} reaches {np.abs(values).max():.3g} px, beyond {reach} for a {width}x{height} image"
            )
        checked.append(values.tolist())
    return checked


def rle_string_counts(counts: bytes) -> list[int]:
    """The run lengths of a compressed COCO RLE string (pycocotools' rleFrString, in Python, checked):
    ValueError on characters outside the format or negative runs, never undefined memory."""
    runs: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(counts):
                raise ValueError("compressed RLE ends inside a number")
            code = counts[position] - 48
            if not 0 <= code < 64:
                raise ValueError(f"compressed RLE has a character outside the format at {position}")
            value |= (code & 0x1F) << (5 * shift)
            more = bool(code & 0x20)
            position += 1
            shift += 1
            if not more and code & 0x10:
                value |= -1 << (5 * shift)
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            raise ValueError("compressed RLE decodes to a negative run length")
        runs.append(value)
    return runs


def check_rle(segmentation: dict, height: int, width: int) -> dict:
    """A COCO RLE whose size is the image's and whose runs cover exactly height x width pixels ->
    a compressed RLE pycocotools can decode safely; ValueError otherwise."""
    size = segmentation.get("size")
    if not isinstance(size, list | tuple) or [*size] != [height, width]:
        raise ValueError(f"RLE size {size} differs from image size {[height, width]}")
    counts = segmentation.get("counts")
    if isinstance(counts, list):
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
            raise ValueError("uncompressed RLE counts must be non-negative integers")
        runs = counts
    elif isinstance(counts, str | bytes):
        counts = counts.encode("ascii", errors="replace") if isinstance(counts, str) else counts
        runs = rle_string_counts(counts)
    else:
        raise ValueError(f"RLE counts of type {type(counts).__name__}")
    if sum(runs) != height * width:
        raise ValueError(f"RLE runs cover {sum(runs)} pixels, the image has {height * width}")
    if isinstance(segmentation.get("counts"), list):
        return mask_utils.frPyObjects({"size": [height, width], "counts": runs}, height, width)
    return {"size": [height, width], "counts": counts}


def coco_segmentation_to_rle(segmentation: list | dict, height: int, width: int) -> dict:
    """COCO `segmentation` (polygon list, uncompressed or compressed RLE) -> one compressed RLE.

    Every input is checked first (check_image_size, check_polygons, check_rle): a malformed one is
    a ValueError naming the problem, never a pycocotools crash or a mask read from stray memory.
    """
    height, width = check_image_size(height, width)
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(check_polygons(segmentation, height, width), height, width))
    if isinstance(segmentation, dict) and "counts" in segmentation:
        return check_rle(segmentation, height, width)
    raise ValueError(f"unknown segmentation type {type(segmentation).__name__}")


def coco_instance_mask(segmentation: list | dict, height: int, width: int) -> np.ndarray:
    """COCO `segmentation` -> (height, width) uint8 in {0,1}."""
    rle = coco_segmentation_to_rle(segmentation, height, width)
    m = mask_utils.decode(rle)
    if m.shape != (height, width):
        raise ValueError(f"mask shape {m.shape} differs from image size {(height, width)}")
    return (m > 0).astype(np.uint8)


def voc_person_instances(
    object_png: np.ndarray, class_png: np.ndarray, person_class: int = VOC_PERSON_CLASS
) -> list[tuple[int, np.ndarray]]:
    """Person instances of one VOC image.

    object_png: (H,W) instance ids (palette indices; 0 background, 255 void);
    class_png: (H,W) VOC class ids. An instance is a person when most of its pixels have the
    person class. Returns [(instance id, (H,W) uint8 {0,1} mask)], sorted by id.
    """
    if object_png.shape != class_png.shape:
        raise ValueError(f"SegmentationObject {object_png.shape} and SegmentationClass {class_png.shape} differ")
    out = []
    for inst in np.unique(object_png):
        if inst in (0, VOC_VOID):
            continue
        m = object_png == inst
        classes, counts = np.unique(class_png[m], return_counts=True)
        if classes[np.argmax(counts)] == person_class:
            out.append((int(inst), m.astype(np.uint8)))
    return out


def encode_rle(mask: np.ndarray) -> dict:
    """(H,W) binary -> compressed COCO RLE with `counts` as str (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle
