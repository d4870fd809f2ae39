"""YOLOX-nano (Megvii, Apache-2.0; models/weights/yolox_nano/ with its LICENSE and NOTICE), the
default person detector of models.people.detect: its input, its output, its runtime.

    letterbox(image_bgr, size) -> (padded, scale)   the image in the top-left of a size x size square of 114
    yolox_grid(size, strides) -> (cells, strides)   the output rows' cells and strides, in YOLOX's order
    decode_yolox(raw, size, scale, min_score, class_id) -> (K, 5)   output rows -> one class's boxes
    yolox_session(path, threads)           an onnxruntime session of the export that takes any input size
    YOLOX_STRIDES, YOLOX_RUNTIMES, YOLOX_PAD_VALUE, YOLOX_PERSON_CLASS   fixed by the model and its runtimes
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

YOLOX_STRIDES: tuple[int, ...] = (8, 16, 32)
YOLOX_RUNTIMES: tuple[str, ...] = ("onnxruntime", "opencv")
# Letterbox fill and the COCO-80 index of "person": fixed by how YOLOX was trained.
YOLOX_PAD_VALUE = 114
YOLOX_PERSON_CLASS = 0
_YOLOX_BOX_COLUMNS = 5  # x, y, log w, log h, objectness; class scores follow


def letterbox(image_bgr: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """YOLOX's input: (H, W, 3) uint8 -> ((size, size, 3) uint8 padded with 114, scale).

    The image is resized by scale = min(size / H, size / W) and placed at the top-left corner, so
    a box in the letterbox divided by `scale` is a box in the image.
    """
    height, width = image_bgr.shape[:2]
    scale = min(size / height, size / width)
    new_w, new_h = max(1, int(round(width * scale))), max(1, int(round(height * scale)))
    padded = np.full((size, size, 3), YOLOX_PAD_VALUE, np.uint8)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    padded[:new_h, :new_w] = cv2.resize(image_bgr, (new_w, new_h), interpolation=interpolation)
    return padded, scale


def yolox_grid(size: int, strides: Sequence[int] = YOLOX_STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """Cell indices (N, 2) [col, row] and their strides (N, 1) in YOLOX's output order.

    N = sum((size // s) ** 2): 3549 for size 416 (52^2 + 26^2 + 13^2).
    """
    cells, cell_strides = [], []
    for stride in strides:
        n = size // stride
        cols, rows = np.meshgrid(np.arange(n), np.arange(n))
        cells.append(np.stack([cols, rows], axis=-1).reshape(-1, 2))
        cell_strides.append(np.full((n * n, 1), stride))
    return np.concatenate(cells).astype(np.float32), np.concatenate(cell_strides).astype(np.float32)


def decode_yolox(
    raw: np.ndarray, size: int, scale: float, min_score: float, class_id: int = YOLOX_PERSON_CLASS
) -> np.ndarray:
    """YOLOX output rows -> (K, 5) float32 [x, y, w, h, score] boxes of one class, in image pixels.

    raw: (N, 5 + classes) as the network returns it (objectness and class scores already through
    a sigmoid). Boxes are not suppressed here. Rows that are not finite are dropped.
    """
    raw = np.asarray(raw, np.float32).reshape(-1, raw.shape[-1])
    cells, strides = yolox_grid(size)
    if len(raw) != len(cells):
        raise ValueError(f"YOLOX output has {len(raw)} rows; {len(cells)} expected for a {size}px input")
    score = raw[:, 4] * raw[:, _YOLOX_BOX_COLUMNS + class_id]
    keep = np.isfinite(raw).all(axis=1) & (score >= min_score)
    raw, cells, strides, score = raw[keep], cells[keep], strides[keep], score[keep]
    centre = (raw[:, :2] + cells) * strides
    extent = np.exp(np.minimum(raw[:, 2:4], np.log(size))) * strides  # no box beyond ~size * stride
    boxes = np.concatenate([centre - extent / 2, extent], axis=1) / scale
    return np.concatenate([boxes, score[:, None]], axis=1).astype(np.float32)


def yolox_session(path: str, threads: int = 1) -> Any:
    """An onnxruntime session of the YOLOX export at `path` that takes any input size.

    The export fixes its input at 1x3x416x416 and its output at 1x3549x85, though its graph
    computes every size (its reshapes keep the batch and the channels and infer the rest): the
    input's height and width and the output's cell count are made symbolic in memory, the file is
    read as it is (its NOTICE: not modified).
    """
    import onnx
    import onnxruntime as ort

    model = onnx.load(path)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "cells"
    del model.graph.value_info[:]  # intermediate shapes of the 416 export: inferred again
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
