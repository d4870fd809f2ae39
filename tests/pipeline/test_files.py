"""pipeline/lib/files.py: atomic writes leave nothing behind, even after a killed writer."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pipeline.lib import mask_outputs
from pipeline.lib.files import remove_stale_temps, temp_path_for, write_json


def dead_pid() -> int:
    """The pid of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_writers_temp_file_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "cache.h5"
    stale = tmp_path / f".cache.tmp-{dead_pid()}.h5"
    stale.write_bytes(b"half a cache")
    alive = tmp_path / ".cache.tmp-1.h5"  # pid 1 is alive: another writer's file is never touched
    alive.write_bytes(b"in progress")
    other = tmp_path / f".summary.tmp-{dead_pid()}.json"  # another target's temp waits for its own write
    other.write_text("{}")
    write_json(target, {"ok": True})
    assert target.is_file() and not stale.exists() and alive.exists() and other.exists()
    assert remove_stale_temps(tmp_path / "summary.json") == [other]
    assert temp_path_for(target).name.startswith(".cache.tmp-")


def test_a_zero_byte_png_never_takes_the_masks_name(tmp_path, monkeypatch):
    """cv2.imwrite can report success and leave 0 bytes (a full disk): the PNG is refused, not renamed."""

    def full_disk(path: str, array: np.ndarray) -> bool:
        open(path, "wb").close()
        return True

    monkeypatch.setattr(mask_outputs.cv2, "imwrite", full_disk)
    target = tmp_path / "a.jpg.person0.png"
    with pytest.raises(OSError, match="disk full"):
        mask_outputs.write_png(target, np.zeros((4, 4), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_a_truncated_jpeg_is_refused_by_the_one_decoder(sample) -> None:
    """OpenCV decodes a JPEG cut short as grey below the cut: the decoder of every stage refuses it."""
    from pipeline.lib.images import decode_rgb, truncated_jpeg

    data = next((sample / "coco" / "val2017").glob("*.jpg")).read_bytes()
    for fraction in (0.3, 0.7, 0.95):
        cut = data[: int(len(data) * fraction)]
        assert truncated_jpeg(cut) and decode_rgb(cut) is None
    assert not truncated_jpeg(data) and decode_rgb(data) is not None
    assert decode_rgb(data + b"\x00" * 64 + b"appended by a camera").shape == decode_rgb(data).shape


def test_a_photos_records_are_decayed_by_their_overlap_with_better_masks():
    """results.json: the lower of two overlapping masks keeps (1 - IoU) of its quality and its
    score follows (the detector's share kept); a mask without a quality (a box segmenter's) is left."""
    from models.sample import encode_rle

    a, b, c = (np.zeros((20, 20), bool) for _ in range(3))
    a[0:10, 0:10] = True
    b[0:10, 5:15] = True  # IoU with a: 1/3
    c[0:10, 0:10] = True
    records = [{"segmentation": encode_rle(m), "quality": 0.0, "score": 0.0} for m in (a, b, c)]
    mask_outputs.decay_overlapping(records, [0.9, 0.6, None], [0.45, 0.3, 0.8])
    assert records[0]["quality"] == 0.9 and records[0]["score"] == 0.45
    assert records[1]["quality"] == pytest.approx(0.4, abs=1e-4) and records[1]["score"] == pytest.approx(0.2, abs=1e-5)
    assert records[1]["overlaps"] == {"person": 0, "iou": 0.333} and "overlaps" not in records[0]
    assert records[2] == {"segmentation": records[2]["segmentation"], "quality": 0.0, "score": 0.0}  # untouched
