"""Ground-truth masks from COCO annotations and VOC PNGs, as binary (H,W) uint8 arrays."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

VOC_PERSON_CLASS = 15
VOC_VOID = 255


def coco_segmentation_to_rle(segmentation: list | dict, height: int, width: int) -> dict:
    """COCO `segmentation` (polygon list, uncompressed or compressed RLE) -> one compressed RLE."""
    if isinstance(segmentation, list):
        if not segmentation:
            raise ValueError("empty polygon list")
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        return mask_utils.frPyObjects(segmentation, height, width)
    if isinstance(segmentation, dict) and "counts" in segmentation:
        rle = dict(segmentation)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
        return rle
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
