"""Whether a folder already holds a usable dataset copy: the layout checks of COCO 2017 and VOC 2012.

    check_coco_layout(root, splits=("train", "val"), year="2017") -> [problems]   [] = usable as is
    check_voc_layout(root, split_files=("train.txt", "val.txt")) -> [problems]    [] = usable as is

A copy that passes is used as is, read-only (pipeline/lib/fetch.prepare_dataset); the Download tasks'
complete() runs them too (a few ``stat`` calls).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def _nonempty_dir(path: Path) -> bool:
    return path.is_dir() and next(path.iterdir(), None) is not None


def check_coco_layout(root: Path, splits: Sequence[str] = ("train", "val"), year: str = "2017") -> list[str]:
    """Problems that keep ``root`` from being a usable COCO copy; empty list = usable as is.

    Needs, per split: ``annotations/person_keypoints_<split><year>.json`` (a non-empty file) and a
    non-empty ``<split><year>/`` image folder.
    """
    root = Path(root)
    if not root.is_dir():
        return [f"{root}: no such folder"]
    problems = []
    for split in splits:
        annotation = root / "annotations" / f"person_keypoints_{split}{year}.json"
        if not annotation.is_file() or annotation.stat().st_size == 0:
            problems.append(f"{annotation}: missing or empty keypoint annotation file")
        images = root / f"{split}{year}"
        if not _nonempty_dir(images):
            problems.append(f"{images}: missing or empty image folder")
    return problems


def check_voc_layout(root: Path, split_files: Sequence[str] = ("train.txt", "val.txt")) -> list[str]:
    """Problems that keep ``root`` from being a usable VOC 2012 copy; empty list = usable as is.

    ``root`` is the folder that holds ``VOCdevkit/``; needs non-empty ``VOCdevkit/VOC2012/``
    ``JPEGImages``, ``SegmentationObject``, ``SegmentationClass`` and ``ImageSets/Segmentation``
    holding ``split_files``.
    """
    root = Path(root)
    if not root.is_dir():
        return [f"{root}: no such folder"]
    voc = root / "VOCdevkit" / "VOC2012"
    problems = []
    for sub in ("JPEGImages", "SegmentationObject", "SegmentationClass", "ImageSets/Segmentation"):
        if not _nonempty_dir(voc / sub):
            problems.append(f"{voc / sub}: missing or empty folder")
    for name in split_files:
        if not (voc / "ImageSets" / "Segmentation" / name).is_file():
            problems.append(f"{voc / 'ImageSets' / 'Segmentation' / name}: missing split file")
    if problems and root.name in ("VOC2012", "VOCdevkit"):
        holder = root.parent if root.name == "VOCdevkit" else root.parent.parent
        problems.append(f"{root}: pass the folder that holds VOCdevkit/ (here {holder}), not {root.name}/ itself")
    return problems
