"""Full-size behaviour of the data stages: streaming annotations at bounded memory, the sharded cache,
and the download requirements of COCOPersons / VOCPersons."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from bench.scale import measure, truncate_records, write_synthetic_coco
from models.network.dataset import CacheDataset
from pipeline import BuildCache, COCOPersons
from pipeline.cache import CacheShard, cache_paths
from pipeline.download import DownloadCOCO, DownloadVOC
from pipeline.lib.annotations import PersonFilter, Tally, coco_person_records
from pipeline.lib.cachebuild import shard_range
from pipeline.lib.json_stream import JSONObjectStream, MalformedJSONError
from pipeline.lib.records import count_records, read_records
from pipeline.persons import VOCPersons
from tests.conftest import SAMPLE, build

VAL_JSON = SAMPLE / "coco" / "annotations" / "person_keypoints_val2017.json"
CACHE_NAMES = (
    "image",
    "mask",
    "posemap",
    "prior",
    "joints",
    "affine",
    "image_id",
    "instance_id",
    "source",
    "orig_size",
)


# --- streaming JSON ----------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_chars", [1, 7, 4096, 1 << 20])
def test_stream_gives_what_json_load_gives(chunk_chars):
    """Whatever the buffer size (1 char: every item straddles a refill), the values are json.load's."""
    expected = json.loads(VAL_JSON.read_text())
    streamed: dict[str, object] = {}
    for key, index, value in JSONObjectStream(VAL_JSON, chunk_chars).items({"images", "annotations"}):
        if index is None:
            streamed[key] = value
        else:
            assert index == len(streamed.setdefault(key, []))
            streamed[key].append(value)
    assert streamed == expected


def test_stream_numbers_at_buffer_ends_are_not_cut(tmp_path):
    path = tmp_path / "n.json"
    path.write_text('{"a": [12345, 6.75e2, true, null, "x"], "b": 9876543210}')
    for chunk in (1, 2, 3, 5):
        got = {}
        for key, index, value in JSONObjectStream(path, chunk).items({"a"}):
            got.setdefault(key, []).append(value) if index is not None else got.update({key: value})
        assert got == {"a": [12345, 675.0, True, None, "x"], "b": 9876543210}


@pytest.mark.parametrize(
    "text, reason",
    [
        ('{"images": [ {"id": 1,', "Expecting"),
        ("[1, 2]", "top level is not a JSON object"),
        ('{"images": [], "annotations": []} junk', "text after the top-level object"),
        ('{"images": [{"id": 1} {"id": 2}], "annotations": []}', "between items"),
        ('{"images": [] "annotations": []}', "between top-level keys"),
        ("{1: []}", "object key 1 is not a string"),
    ],
)
def test_malformed_json_names_file_and_reason(tmp_path, text, reason):
    path = tmp_path / "annotations" / "person_keypoints_val2017.json"
    path.parent.mkdir()
    path.write_text(text)
    pattern = rf"malformed annotation JSON in .*person_keypoints_val2017\.json.*{reason}"
    with pytest.raises(MalformedJSONError, match=pattern):
        list(
            coco_person_records(
                tmp_path,
                "annotations/person_keypoints_val2017.json",
                "val2017",
                "coco",
                "val",
                PersonFilter(),
                Tally(),
                chunk_chars=8,
            )
        )


def test_missing_annotations_list_is_named(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"images": [], "annotations": 3}')
    with pytest.raises(MalformedJSONError, match="no 'annotations' list"):
        list(coco_person_records(tmp_path, "a.json", ".", "coco", "val", PersonFilter(), Tally()))


def val_records(filt: PersonFilter, tally: Tally, **kwargs: object):
    """coco_person_records over the sample's COCO val2017 annotations."""
    return coco_person_records(
        SAMPLE / "coco", "annotations/person_keypoints_val2017.json", "val2017", "coco", "val", filt, tally, **kwargs
    )


def test_records_do_not_depend_on_the_buffer_size():
    runs = []
    for chunk in (16, 1 << 20):
        tally = Tally()
        records = list(val_records(PersonFilter(), tally, chunk_chars=chunk))
        runs.append((records, tally.to_dict()))
    assert runs[0] == runs[1] and runs[0][1]["kept"] == len(runs[0][0]) > 10
    # file order of the annotations
    ann_order = [a["id"] for a in json.loads(VAL_JSON.read_text())["annotations"]]
    kept = [r["instance_id"] for r in runs[0][0]]
    assert kept == [i for i in ann_order if i in set(kept)]


def test_single_person_filter_counts_persons_per_image():
    tally = Tally()
    records = list(val_records(PersonFilter(single_person_only=True), tally))
    data = json.loads(VAL_JSON.read_text())
    per_image: dict[int, int] = {}
    for a in data["annotations"]:
        if not a["iscrowd"] and a["num_keypoints"] > 0:
            per_image[a["image_id"]] = per_image.get(a["image_id"], 0) + 1
    on_crowded = sum(1 for a in data["annotations"] if per_image.get(a["image_id"], 0) > 1)
    assert tally.skipped["multi_person_image"] == on_crowded > 0
    assert all(per_image[r["image_id"]] == 1 for r in records)


# --- memory on a synthetic COCO-structured split ---------------------------------------------


@pytest.fixture(scope="module")
def synthetic_coco(tmp_path_factory) -> Path:
    """~20k person annotations (COCO's structure, ~21 MB JSON) on hard links to the sample's images."""
    return write_synthetic_coco(tmp_path_factory.mktemp("synthetic") / "coco", 20_000)


@pytest.mark.slow
def test_persons_memory_is_a_fraction_of_json_load(synthetic_coco, tmp_path):
    ann = synthetic_coco / "annotations" / "person_keypoints_train2017.json"
    assert ann.stat().st_size > 15e6
    plain = measure("json_load", annotation_file=ann)
    records = tmp_path / "persons.jsonl"
    persons = measure(
        "persons",
        root=synthetic_coco,
        annotations="annotations/person_keypoints_train2017.json",
        images="train2017",
        split="train",
        out=records,
    )
    assert plain["count"] >= 20_000 and persons["count"] == count_records(records) > 5_000
    # json.load holds the parsed file (~5x its size); the stream holds one item + a compact image table.
    assert plain["growth_mib"] > 60
    assert persons["growth_mib"] < 0.3 * plain["growth_mib"], (plain, persons)
    assert persons["peak_rss_mib"] < 4096


@pytest.mark.slow
def test_build_cache_memory_does_not_grow_with_records(synthetic_coco, tmp_path):
    records = tmp_path / "persons.jsonl"
    with open(records, "w") as f:
        for r in coco_person_records(
            synthetic_coco,
            "annotations/person_keypoints_train2017.json",
            "train2017",
            "coco",
            "train",
            PersonFilter(),
            Tally(),
        ):
            f.write(json.dumps(r) + "\n")
            if f.tell() > 2e6:
                break
    runs = {}
    for n in (40, 160):
        subset = tmp_path / f"persons-{n}.jsonl"
        assert truncate_records(records, subset, n) == n
        runs[n] = measure(
            "cache", records=subset, root=synthetic_coco, out=tmp_path / f"cache-{n}.h5", processes=2, window=8
        )
        assert runs[n]["count"] == n
    # 4x the records (and of the cache file) adds no more than noise to the peak memory.
    assert runs[160]["peak_rss_mib"] < runs[40]["peak_rss_mib"] + 40, runs
    assert runs[160]["tree_peak_mib"] < 4096


# --- sharded cache -----------------------------------------------------------------------------


def test_shard_ranges_cover_the_records_in_order():
    for total in (0, 1, 7, 100):
        for shards in (1, 3, 8):
            ranges = [shard_range(total, k, shards) for k in range(shards)]
            assert ranges[0][0] == 0 and ranges[-1][1] == total
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
            assert max(b - a for a, b in ranges) - min(b - a for a, b in ranges) <= 1
    with pytest.raises(ValueError):
        shard_range(10, 3, 3)


def test_read_records_range(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"i": i}) + "\n" + ("\n" if i == 2 else "") for i in range(6)))
    assert [r["i"] for r in read_records(path, 2, 5)] == [2, 3, 4]
    assert count_records(path) == 6


def read_all(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as h5:
        return {name: h5[name][:] for name in CACHE_NAMES}


def test_three_shards_equal_one_cache_and_read_as_one_dataset(luigi_config, tmp_path):
    single = BuildCache(dataset="coco", split="val")
    assert build(single)
    single_path = Path(single.output()["cache"].path)
    one = read_all(single_path)
    luigi_config({"work": {"root": tmp_path / "work3"}, "BuildCache": {"shards": 3}})
    sharded = BuildCache(dataset="coco", split="val")
    assert sharded.shards == 3 and Path(sharded.output()["cache"].path) != single_path
    assert build(sharded)
    index = Path(sharded.output()["cache"].path)
    files = cache_paths(sharded)
    assert [Path(f).name for f in files] == [f"cache-{k:05d}-of-00003.h5" for k in range(3)]
    assert all(Path(f).parent == index.parent for f in files)
    three = read_all(index)
    for name in CACHE_NAMES:
        np.testing.assert_array_equal(three[name], one[name], err_msg=name)
    assert len(one["instance_id"]) > 10
    summary = json.loads(Path(sharded.output()["summary"].path).read_text())
    assert summary["cached"] == len(one["instance_id"]) == sum(summary["shard_cached"])
    assert all(n > 0 for n in summary["shard_cached"])
    # training reads the index, or the shard list, as one dataset with the unsharded order
    reference = CacheDataset([single_path])
    for paths in ([str(index)], files):
        ds = CacheDataset(paths)
        assert len(ds) == len(reference)
        for i in (0, len(ds) // 2, len(ds) - 1):
            for key in ("image", "mask", "prior", "posemap"):
                assert torch.equal(ds[i][key], reference[i][key])
    # the folder moves with its shards (they are referenced by file name)
    moved = tmp_path / "moved"
    shutil.copytree(index.parent, moved)
    np.testing.assert_array_equal(read_all(moved / "cache.h5")["image"], one["image"])
    # a lost shard is noticed: the task is incomplete and the path helper names the file
    Path(files[1]).unlink()
    assert not BuildCache(dataset="coco", split="val").complete()
    with pytest.raises(FileNotFoundError, match="cache-00001-of-00003.h5"):
        cache_paths(sharded)
    assert build(BuildCache(dataset="coco", split="val"))  # rebuilds the missing shard only
    assert Path(files[1]).is_file() and cache_paths(sharded) == files


def test_shard_count_does_not_change_folders_or_signatures(luigi_config):
    one = BuildCache(dataset="coco", split="val", shards=1)
    four = BuildCache(dataset="coco", split="val", shards=4)
    assert one.work_dir() == four.work_dir() and one.signature() == four.signature()
    shard = CacheShard(dataset="coco", split="val", shard=2, shards=4)
    assert Path(shard.output()["cache"].path) == four.work_dir() / "cache-00002-of-00004.h5"


# --- downloads wiring --------------------------------------------------------------------------


def test_persons_tasks_require_the_download_of_their_root(luigi_config, tmp_path):
    coco = COCOPersons(dataset="coco", split="val")
    assert isinstance(coco.requires(), DownloadCOCO)
    assert Path(coco.requires().dataset_root()) == SAMPLE / "coco"
    assert COCOPersons(dataset="ochuman", split="val").requires() == []
    voc = VOCPersons(split="train")
    assert isinstance(voc.requires(), DownloadVOC) and Path(voc.requires().dataset_root()) == SAMPLE / "voc"
    assert Path(VOCPersons(split="train", root=str(tmp_path)).requires().dataset_root()) == tmp_path
    # the sample is a valid copy: used as is, offline
    assert build(coco.requires())
    manifest = json.loads(Path(coco.requires().output().path).read_text())
    assert manifest["source"] == "existing copy, not downloaded"
