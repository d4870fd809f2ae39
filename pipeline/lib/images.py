"""Reading photos: one decoder for every stage (OpenCV; RGB out).

    decode_rgb(data)  encoded bytes -> (H, W, 3) uint8 RGB, or None when they cannot be decoded
    read_rgb(path)    the same for a file (None also when it cannot be read)
    truncated_jpeg(data)  whether JPEG bytes end before their last scan does
Each caller turns None into its own named problem (a skip reason, BadImageError, RecordError).
OpenCV decodes a truncated JPEG "successfully", grey below the cut: such bytes are refused here,
so that no stage caches or masks half a photo.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

JPEG_SOI, JPEG_SOS, JPEG_EOI = b"\xff\xd8", b"\xff\xda", b"\xff\xd9"


def truncated_jpeg(data: bytes) -> bool:
    """True for JPEG bytes without an end-of-image marker after their last start-of-scan.

    Entropy-coded data never holds an unescaped marker (0xFF is stuffed as FF 00), so an EOI after
    the last SOS means the last scan is complete; bytes appended after the EOI are allowed.
    """
    if not data.startswith(JPEG_SOI):
        return False
    return data.rfind(JPEG_EOI) < data.rfind(JPEG_SOS)


def decode_rgb(data: bytes) -> np.ndarray | None:
    """Encoded image bytes -> (H, W, 3) uint8 RGB, or None (also for a truncated JPEG)."""
    if truncated_jpeg(data):
        return None
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_rgb(path: Path | str) -> np.ndarray | None:
    """An image file -> (H, W, 3) uint8 RGB, or None when it cannot be read or decoded."""
    try:
        return decode_rgb(Path(path).read_bytes())
    except OSError:
        return None
