"""Reading photos: one decoder for every stage (OpenCV; RGB out).

    decode_rgb(data)  encoded bytes -> (H, W, 3) uint8 RGB, or None when they cannot be decoded
    read_rgb(path)    the same for a file (None also when it cannot be read)
Each caller turns None into its own named problem (a skip reason, BadImageError, RecordError).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def decode_rgb(data: bytes) -> np.ndarray | None:
    """Encoded image bytes -> (H, W, 3) uint8 RGB, or None."""
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_rgb(path: Path | str) -> np.ndarray | None:
    """An image file -> (H, W, 3) uint8 RGB, or None when it cannot be read or decoded."""
    try:
        return decode_rgb(Path(path).read_bytes())
    except OSError:
        return None
