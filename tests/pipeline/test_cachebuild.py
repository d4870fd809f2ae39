"""build_cache_file on the real sample: a photo decoded once for all its people, crops handed over
in shared memory, whole-chunk writes, the same bytes whatever the pool size, and samples equal to
building each record on its own."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import pipeline.lib.cachebuild as cachebuild
from models.sample.sample import CropConfig, person_sample
from pipeline.lib.annotations import PersonFilter, Tally, coco_person_records
from pipeline.lib.cachebuild import build_cache_file, photo_jobs
from pipeline.lib.cachefile import CacheWriter, cache_layout
from pipeline.lib.images import read_rgb
from pipeline.lib.records import record_mask
from tests.conftest import SAMPLE

CFG = CropConfig()
COCO = SAMPLE / "coco"


@pytest.fixture(scope="module")
def val_records(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """persons.jsonl of the sample's COCO val people (several photos hold more than one)."""
    records = list(
        coco_person_records(
            COCO, "annotations/person_keypoints_val2017.json", "val2017", "coco", "val", PersonFilter(), Tally()
        )
    )
    path = tmp_path_factory.mktemp("records") / "persons.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_photo_jobs_keep_a_photos_people_together_and_in_order():
    images = list("aabcccddddde")
    pairs = [(i, {"image": name}) for i, name in enumerate(images)]
    jobs = list(photo_jobs(iter(pairs), 4))
    assert [pair for job in jobs for pair in job] == pairs
    assert all(0 < len(job) <= 4 for job in jobs)
    # a, b together; c's three people would overflow that job, so they start the next one;
    # d's five people are more than a job holds: split in 4 + 1
    assert [[r["image"] for _, r in job] for job in jobs] == [list("aab"), list("ccc"), list("dddd"), list("de")]
    assert [len(job) for job in photo_jobs(iter(pairs), 1)] == [1] * len(pairs)


def test_each_photo_is_decoded_once_for_all_its_people(val_records, tmp_path, monkeypatch):
    decoded: list[str] = []

    def counting_read(path: Path) -> np.ndarray | None:
        decoded.append(Path(path).name)
        return read_rgb(path)

    monkeypatch.setattr(cachebuild, "read_rgb", counting_read)
    summary = build_cache_file(val_records, COCO, tmp_path / "cache.h5", CFG, processes=1, window=64)
    records = read_lines(val_records)
    photos = [Path(r["image"]).name for r in records]
    runs = [name for i, name in enumerate(photos) if i == 0 or photos[i - 1] != name]
    assert summary["cached"] == len(records) > len(runs)  # the sample has photos of several people
    assert decoded == runs


def test_cache_is_the_same_bytes_for_any_pool_and_equals_one_record_at_a_time(val_records, tmp_path):
    paths = []
    for k, (processes, window) in enumerate([(1, 8), (2, 64), (2, 64), (2, 3)]):
        paths.append(tmp_path / f"cache-{k}.h5")
        build_cache_file(val_records, COCO, paths[-1], CFG, processes=processes, window=window)
    first = paths[0].read_bytes()
    assert all(p.read_bytes() == first for p in paths[1:])
    records = read_lines(val_records)
    with h5py.File(paths[0], "r") as h5:
        assert len(h5["image"]) == len(records)
        assert h5["image"].chunks == (1, CFG.size, CFG.size, 3) and h5["prior"].chunks == (1, CFG.size, CFG.size)
        for i, record in enumerate(records):
            image = read_rgb(COCO / record["image"])
            keypoints = np.asarray(record["keypoints"], np.float32)
            alone = person_sample(image, record_mask(record, COCO), keypoints, record["bbox"], CFG)
            for name, value in alone.items():
                np.testing.assert_array_equal(h5[name][i], value, err_msg=f"record {i} {name}")
            assert h5["instance_id"][i] == record["instance_id"] and h5["image_id"][i] == record["image_id"]
            assert h5["source"][i].decode() == record["dataset"]


def test_an_unreadable_photo_is_each_of_its_people_s_problem_and_no_one_else_s(val_records, tmp_path):
    root = tmp_path / "coco"
    shutil.copytree(COCO / "val2017", root / "val2017")
    records = read_lines(val_records)
    photos = [r["image"] for r in records]
    crowded = next(name for name in photos if photos.count(name) >= 2)
    (root / crowded).write_bytes(b"not a jpeg" * 20)
    # one person of another photo with several people has the wrong image size in its record
    other = next(i for i, name in enumerate(photos) if name != crowded and photos.count(name) >= 2)
    records[other]["width"] += 1
    path = tmp_path / "persons.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = build_cache_file(path, root, tmp_path / "cache.h5", CFG, processes=2, window=8)
    corrupt = [p for p in summary["problems"] if p["reason"] == "corrupt_image"]
    assert [p["record"] for p in corrupt] == [r["instance_id"] for r in records if r["image"] == crowded]
    assert [p["record"] for p in summary["problems"] if p["reason"] == "size_mismatch"] == [
        records[other]["instance_id"]
    ]
    assert summary["cached"] == len(records) - photos.count(crowded) - 1
    with h5py.File(tmp_path / "cache.h5", "r") as h5:
        kept = [r["instance_id"] for i, r in enumerate(records) if r["image"] != crowded and i != other]
        assert h5["instance_id"][:].tolist() == kept


def fake_sample(i: int, cfg: CropConfig) -> dict:
    rng = np.random.default_rng(i)
    sample: dict = {}
    for name, (shape, dtype) in cache_layout(cfg).items():
        if name == "source":
            sample[name] = f"set{i}"
        elif np.dtype(dtype).kind == "f":
            sample[name] = rng.random(shape).astype(dtype)
        else:
            sample[name] = rng.integers(0, 200, shape).astype(dtype)
    return sample


def test_cache_writer_grows_past_expected_and_refuses_a_wrong_shape(tmp_path):
    cfg = CropConfig(size=32)
    samples = [fake_sample(i, cfg) for i in range(5)]
    with h5py.File(tmp_path / "w.h5", "w") as h5:
        writer = CacheWriter(h5, cfg, expected=2)
        for sample in samples:
            writer.append(sample)
        bad = dict(samples[0], prior=np.zeros((cfg.size, cfg.size + 1), np.uint8))
        with pytest.raises(ValueError, match="prior"):
            writer.append(bad)
        writer.close()
    with h5py.File(tmp_path / "w.h5", "r") as h5:
        assert all(h5[name].shape[0] == 5 for name in h5)
        for i, sample in enumerate(samples):
            for name, value in sample.items():
                stored = h5[name][i]
                assert (stored.decode() if name == "source" else stored.tolist()) == (
                    value if name == "source" else np.asarray(value).tolist()
                ), name


def test_a_pool_map_running_ahead_of_the_writer_is_refused_not_written_over(val_records, tmp_path, monkeypatch):
    """Workers hand crops over in shared-memory slots that the writer frees as it goes: a map that
    took every job at once would reuse a slot before its samples were written."""

    def eager_map(pool, fn, items, max_in_flight, timeout=None):
        return iter([pool.apply(fn, (item,)) for item in items])

    monkeypatch.setattr(cachebuild, "bounded_imap", eager_map)
    target = tmp_path / "cache.h5"
    with pytest.raises(RuntimeError, match="not written yet"):
        build_cache_file(val_records, COCO, target, CFG, processes=2, window=8)
    assert not target.exists()
