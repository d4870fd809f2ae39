"""One bad file never stops the rest: a photo whose name is too long for its mask files, a name
that is not UTF-8, a hostile keypoints sidecar each cost that photo alone, with a named reason
(pipeline/lib/mask_outputs.py short_mask_name, pipeline/lib/folder.py not_utf8,
pipeline/lib/keypoint_files.py read_json)."""

from __future__ import annotations

import json
import os
import shutil

from pipeline.lib import keypoint_files
from pipeline.lib.mask_outputs import MAX_MASK_NAME_BYTES, short_mask_name
from tests.pipeline.test_generate import PHOTOS, VAL_IMAGES, check_consistent, generate


def sidecar_of(photo: str) -> list[dict]:
    """The photo's people as a sidecar (a list of {keypoints, bbox}) from the val keypoints."""
    data = json.loads((VAL_IMAGES.parent / "annotations" / "person_keypoints_val2017.json").read_text())
    image_id = next(im["id"] for im in data["images"] if im["file_name"] == photo)
    return [
        {"keypoints": a["keypoints"], "bbox": a["bbox"]}
        for a in data["annotations"]
        if a["image_id"] == image_id and not a.get("iscrowd")
    ]


def test_a_short_mask_name_is_fixed_and_collision_free():
    assert short_mask_name("photo.jpg") == "photo.jpg"
    long_a, long_b = "é" * 120 + "a.jpg", "é" * 120 + "b.jpg"  # 245 bytes each, the same first 200
    short_a, short_b = short_mask_name(long_a), short_mask_name(long_b)
    assert short_a != short_b and short_a == short_mask_name(long_a)
    assert all(len(s.encode()) <= MAX_MASK_NAME_BYTES for s in (short_a, short_b))
    assert short_a.startswith("é" * 90) and "~" in short_a  # whole characters, then the digest


def test_a_photo_whose_name_is_too_long_for_its_masks_gets_short_mask_names(tmp_path, luigi_config, tiny_model):
    photos = tmp_path / "photos"
    photos.mkdir()
    long_names = ["x" * 240 + f"{k}.jpg" for k in range(2)]  # 245 bytes: ".person0.png" would pass 255
    for name, photo in zip(long_names, PHOTOS, strict=False):
        shutil.copy(VAL_IMAGES / photo, photos / name)
        (photos / name).with_suffix(".json").write_text(json.dumps(sidecar_of(photo)))
    shutil.copy(VAL_IMAGES / PHOTOS[2], photos / "plain.jpg")
    (photos / "plain.json").write_text(json.dumps(sidecar_of(PHOTOS[2])))
    out = tmp_path / "masks"
    ok, summary = generate(input_dir=str(photos), output_dir=str(out), model=str(tiny_model), shard_size=10)
    assert ok and summary["done"] == 3 and summary["problems_total"] == 0, summary
    rows = {r["path"]: r for r in check_consistent(out)}
    for name in long_names:
        files = rows[name]["files"]
        assert files and all(f.startswith(short_mask_name(name) + ".") for f in files)
    assert len({tuple(rows[n]["files"]) for n in long_names}) == 2
    results = [r for f in (out / "shards").glob("*/results.json") for r in json.loads(f.read_text())]
    assert {r["file_name"] for r in results} == {*long_names, "plain.jpg"}  # the photos' own names


def test_a_name_that_is_not_utf8_is_refused_by_name_and_the_night_goes_on(tmp_path, luigi_config, tiny_model):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(VAL_IMAGES / PHOTOS[0], photos / "good.jpg")
    (photos / "good.json").write_text(json.dumps(sidecar_of(PHOTOS[0])))
    bad = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 bytes: not UTF-8
    shutil.copy(VAL_IMAGES / PHOTOS[1], photos / bad)
    os.mkdir(os.path.join(os.fsencode(photos), b"d\xffir"))
    shutil.copy(VAL_IMAGES / PHOTOS[1], os.path.join(os.fsencode(photos), b"d\xffir", b"inside.jpg"))
    out = tmp_path / "masks"
    ok, summary = generate(input_dir=str(photos), output_dir=str(out), model=str(tiny_model))
    assert ok and summary["done"] == 1
    assert summary["refused"] == {"name_not_utf8": 2}
    shown = {p["file"] for p in summary["problems"] if p["reason"] == "name_not_utf8"}
    assert shown == {"caf\\xe9.jpg", "d\\xffir/"}
    for path in [out / "summary.json", *out.glob("shards/*/*.json*")]:
        path.read_bytes().decode("utf-8")  # strict: every JSON output is valid UTF-8


def test_hostile_sidecars_are_bad_keypoints_of_their_photo_only(tmp_path, luigi_config, tiny_model, monkeypatch):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, photo in (("deep.jpg", PHOTOS[0]), ("huge.jpg", PHOTOS[1]), ("good.jpg", PHOTOS[2])):
        shutil.copy(VAL_IMAGES / photo, photos / name)
    (photos / "deep.json").write_text("[" * 20_000 + "]" * 20_000)  # past the parser's recursion limit
    (photos / "huge.json").write_text(json.dumps(sidecar_of(PHOTOS[1]) * 200))
    (photos / "good.json").write_text(json.dumps(sidecar_of(PHOTOS[2])))
    monkeypatch.setattr(keypoint_files, "MAX_SIDECAR_BYTES", 100_000)
    out = tmp_path / "masks"
    ok, summary = generate(input_dir=str(photos), output_dir=str(out), model=str(tiny_model))
    assert ok and summary["done"] == 1
    rows = {r["path"]: r for r in check_consistent(out)}
    assert rows["deep.jpg"]["reason"] == "bad_keypoints" and "nested too deeply" in rows["deep.jpg"]["detail"]
    assert rows["huge.jpg"]["reason"] == "bad_keypoints" and "100,000 a keypoints sidecar" in rows["huge.jpg"]["detail"]
