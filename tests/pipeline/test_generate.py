"""GenerateMasks / MaskShard: incremental nights, bad inputs, killed shards, luigid workers, IoU agreement."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from luigi.task_register import Register

from models.evaluation.metrics import iou
from models.sample.masks import coco_instance_mask
from pipeline.generate import GenerateMasks
from pipeline.lib import files, folder
from pipeline.lib import keypoint_files as folder_keypoints
from pipeline.lib.night import format_summary
from pipeline.lib.photo_masker import PhotoMasker
from tests.conftest import REPO, SAMPLE, build

VAL_IMAGES = SAMPLE / "coco" / "val2017"
VAL_KEYPOINTS = SAMPLE / "coco" / "annotations" / "person_keypoints_val2017.json"
PHOTOS = ["000000000785.jpg", "000000040083.jpg", "000000397133.jpg", "000000165518.jpg"]


def copy_photos(dest: Path, names: list[str]) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(VAL_IMAGES / name, dest / name)
    return dest


def keypoints_subset(path: Path, names: list[str], extra_images: list[dict] = ()) -> Path:
    """A COCO annotations file holding only the images `names` (+ extra image entries)."""
    data = json.loads(VAL_KEYPOINTS.read_text())
    images = [im for im in data["images"] if im["file_name"] in names] + list(extra_images)
    ids = {im["id"] for im in images}
    data = {**data, "images": images, "annotations": [a for a in data["annotations"] if a["image_id"] in ids]}
    path.write_text(json.dumps(data))
    return path


def generate(**params) -> tuple[bool, dict]:
    """Build GenerateMasks in-process (fresh task instances) -> (success, summary.json)."""
    Register.clear_instance_cache()
    ok = build(GenerateMasks(print_summary=False, **params))
    summary_path = Path(params["output_dir"]) / "summary.json"
    return ok, json.loads(summary_path.read_text()) if summary_path.exists() else {}


def manifest_rows(out: Path) -> list[dict]:
    return [row for m in sorted((out / "shards").glob("*/manifest.jsonl")) for row in files.read_jsonl(m)]


def check_consistent(out: Path) -> list[dict]:
    """The invariant: done rows' files exist; no mask file without a done row listing it; one row per image."""
    rows = manifest_rows(out)
    paths = [r["path"] for r in rows]
    assert len(paths) == len(set(paths)), "an image appears in two manifests"
    listed = set()
    for row in rows:
        if row["outcome"] == "done":
            assert row["files"] and all((out / f).is_file() for f in row["files"]), row
            listed.update(row["files"])
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*.png")}
    assert on_disk == listed
    return rows


def png_header(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR claiming width x height + a tiny IDAT: a few bytes, a huge image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_nights_are_incremental(tmp_path, luigi_config, tiny_model):
    photos = copy_photos(tmp_path / "photos", PHOTOS[:3])
    keypoints = keypoints_subset(tmp_path / "kp.json", PHOTOS)
    out = tmp_path / "masks"
    params = {
        "input_dir": str(photos),
        "output_dir": str(out),
        "model": str(tiny_model),
        "keypoints": str(keypoints),
        "shard_size": 2,
    }

    ok, first = generate(**params)
    assert ok and first["processed"] == 3 and first["done"] == 3 and first["problems_total"] == 1
    assert first["keypoint_problems"] == {"keypoints_for_missing_image": 1}  # PHOTOS[3] not copied yet
    assert first["people"] == sum(len(list(out.glob(f"{n}.person*.png"))) for n in PHOTOS[:3])
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}

    ok, second = generate(**params)
    assert ok and second == first  # nothing ran: summary untouched
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == mtimes

    shutil.copy(VAL_IMAGES / PHOTOS[3], photos / PHOTOS[3])
    ok, third = generate(**params)
    assert ok and third["processed"] == 1 and third["reused"] == 3 and third["problems_total"] == 0
    check_consistent(out)
    for manifest in (out / "shards").glob("*/manifest.jsonl"):  # the changed shard redid only the new image
        rows = list(files.read_jsonl(manifest))
        if PHOTOS[3] in [r["path"] for r in rows]:
            assert [r["path"] for r in rows if r["run"] == "processed"] == [PHOTOS[3]]
    for p, mtime in mtimes.items():
        if p.suffix == ".png":
            assert p.stat().st_mtime_ns == mtime, f"{p} was rewritten"
    results = [r for m in (out / "shards").glob("*/results.json") for r in json.loads(m.read_text())]
    assert {r["image_id"] for r in results} == {785, 40083, 397133, 165518}  # ids from the keypoints file
    assert all(r["category_id"] == 1 and "counts" in r["segmentation"] for r in results)


def test_bad_inputs_are_reported_and_counted(tmp_path, luigi_config, tiny_model):
    photos = copy_photos(tmp_path / "photos", PHOTOS[:2])
    (photos / "sub").mkdir()
    shutil.copy(VAL_IMAGES / PHOTOS[2], photos / "sub" / "Nested.JPEG")
    jpeg = (VAL_IMAGES / PHOTOS[3]).read_bytes()
    (photos / "corrupt.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "text.jpg").write_text("not an image\n")
    (photos / "bomb.png").write_bytes(png_header(100_000, 100_000))
    cv2.imwrite(str(photos / "nobody.png"), np.full((64, 80, 3), 127, np.uint8))
    os.symlink(VAL_IMAGES / PHOTOS[3], photos / "link.jpg")
    ghost = {"id": 999, "file_name": "ghost.jpg", "width": 640, "height": 480}
    keypoints = keypoints_subset(tmp_path / "kp.json", PHOTOS[:3], [ghost])
    data = json.loads(keypoints.read_text())
    data["images"] = [
        dict(im, file_name="Nested.JPEG") if im["file_name"] == PHOTOS[2] else im for im in data["images"]
    ]
    data["annotations"].append(dict(data["annotations"][0], id=1, image_id=999))
    keypoints.write_text(json.dumps(data))
    out = tmp_path / "masks"

    ok, summary = generate(
        input_dir=str(photos), output_dir=str(out), model=str(tiny_model), keypoints=str(keypoints), shard_size=3
    )
    assert ok
    assert summary["skipped"] == {"corrupt_image": 1, "empty_file": 1, "not_an_image": 1, "decompression_bomb": 1}
    assert summary["refused"] == {"symlink": 1}
    assert summary["keypoint_problems"] == {"keypoints_for_missing_image": 1}
    assert summary["no_person"] == 1 and summary["done"] == 3 and summary["images"] == 8
    assert summary["problems_total"] == 6
    by_file = {p["file"]: p["reason"] for p in summary["problems"]}
    assert by_file["bomb.png"] == "decompression_bomb" and by_file["link.jpg"] == "symlink"
    assert by_file["ghost.jpg"] == "keypoints_for_missing_image"
    rows = {r["path"]: r for r in check_consistent(out)}
    for name in [*PHOTOS[:2], "sub/Nested.JPEG"]:
        assert rows[name]["outcome"] == "done" and (out / f"{name}.labels.png").is_file()
    labels = cv2.imread(str(out / "sub/Nested.JPEG.labels.png"), cv2.IMREAD_UNCHANGED)
    assert labels.shape == (427, 640) and labels.max() == rows["sub/Nested.JPEG"]["people"]


def shard_params(photos: Path, out: Path, model: Path, keypoints: Path) -> dict:
    """GenerateMasks parameters of one shard of up to 10 photos with a keypoints file."""
    return {
        "input_dir": str(photos),
        "output_dir": str(out),
        "model": str(model),
        "keypoints": str(keypoints),
        "shard_size": 10,
    }


def test_killed_shard_resumes_consistently(tmp_path, luigi_config, tiny_model, monkeypatch):
    photos = copy_photos(tmp_path / "photos", PHOTOS)
    keypoints = keypoints_subset(tmp_path / "kp.json", PHOTOS)
    out = tmp_path / "masks"
    params = shard_params(photos, out, tiny_model, keypoints)
    real_write = PhotoMasker.write_labels  # written after the photo's person PNGs
    calls = []

    def dies_on_third_image(self, rel, labels):
        calls.append(rel)
        if len(calls) == 3:  # the person PNGs of this image have landed: the kill comes before its labels
            raise KeyboardInterrupt("killed")
        return real_write(self, rel, labels)

    monkeypatch.setattr(PhotoMasker, "write_labels", dies_on_third_image)
    with pytest.raises(KeyboardInterrupt):
        generate(**params)
    assert not list((out / "shards").glob("*/manifest.jsonl"))
    journal = [r for j in (out / "shards").glob("*/journal.jsonl") for r in files.read_jsonl(j)]
    assert [r["path"] for r in journal] == calls[:2]

    monkeypatch.setattr(PhotoMasker, "write_labels", real_write)
    ok, summary = generate(**params)
    assert ok and summary["done"] == 4
    rows = check_consistent(out)
    assert sorted(r["path"] for r in rows if r["run"] == "processed") == sorted(
        calls[2:] + [p for p in PHOTOS if p not in calls]
    )  # the two journaled images were not redone
    assert not list((out / "shards").glob("*/journal.jsonl"))


def test_errors_and_the_pixel_limit_are_retried(tmp_path, luigi_config, tiny_model, monkeypatch):
    photos = copy_photos(tmp_path / "photos", PHOTOS[:2])
    keypoints = keypoints_subset(tmp_path / "kp.json", PHOTOS)
    out = tmp_path / "masks"
    params = shard_params(photos, out, tiny_model, keypoints)
    real_write = PhotoMasker.write_labels

    def out_of_memory_once(self, rel, labels):
        if rel == PHOTOS[0]:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real_write(self, rel, labels)

    monkeypatch.setattr(PhotoMasker, "write_labels", out_of_memory_once)
    ok, first = generate(**params)
    assert ok and first["skipped"] == {"error": 1} and first["done"] == 1
    monkeypatch.setattr(PhotoMasker, "write_labels", real_write)

    shutil.copy(VAL_IMAGES / PHOTOS[2], photos / PHOTOS[2])  # changes the (only) shard
    ok, second = generate(**params)
    assert ok and second["skipped"] == {} and second["done"] == 3
    rows = {r["path"]: r for r in check_consistent(out)}
    assert {p for p, r in rows.items() if r["run"] == "processed"} == {PHOTOS[0], PHOTOS[2]}
    assert list(out.glob(f"{PHOTOS[0]}.person*.png"))

    # a lower limit refuses the photos done before; raising it again does them again
    ok, third = generate(**params, max_pixels=1000)
    assert ok and third["skipped"] == {"decompression_bomb": 3} and third["done"] == 0
    assert check_consistent(out) and not list(out.rglob("*.png"))
    ok, fourth = generate(**params)
    assert ok and fourth["done"] == 3 and fourth["processed"] == 3
    check_consistent(out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_workers_against_luigid_process_each_image_once(tmp_path, tiny_model):
    photos = copy_photos(tmp_path / "photos", PHOTOS)
    keypoints = keypoints_subset(tmp_path / "kp.json", PHOTOS)
    out = tmp_path / "masks"
    port = free_port()
    cfg = tmp_path / "luigi.cfg"
    cfg.write_text(f"[core]\nlog_level = WARNING\n[work]\nroot = {tmp_path / 'work'}\n")
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(cfg), "PYTHONPATH": str(REPO)}
    (tmp_path / "luigid").mkdir()
    luigid = subprocess.Popen(
        [
            str(bin_dir / "luigid"),
            "--port",
            str(port),
            "--address",
            "127.0.0.1",
            "--logdir",
            str(tmp_path / "luigid"),
            "--state-path",
            str(tmp_path / "state.pickle"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.time() < deadline and luigid.poll() is None, "luigid did not start"
                time.sleep(0.2)
        command = [
            str(bin_dir / "luigi"),
            "--module",
            "pipeline",
            "GenerateMasks",
            "--input-dir",
            str(photos),
            "--output-dir",
            str(out),
            "--model",
            str(tiny_model),
            "--keypoints",
            str(keypoints),
            "--shard-size",
            "1",
            "--scheduler-host",
            "127.0.0.1",
            "--scheduler-port",
            str(port),
            "--no-lock",  # both workers run on this one machine (Luigi's pid lock would stop the second)
        ]
        workers = [
            subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for _ in range(2)
        ]
        logs = [w.communicate(timeout=120)[0].decode() for w in workers]
        # 10 = [retcode] already_running: Luigi's code for "other workers ran some of my tasks",
        # the normal end of all but one of the commands sharing a night (posemask masks says 0)
        codes = [w.returncode for w in workers]
        assert set(codes) <= {0, 10}, [(c, log[-1500:]) for c, log in zip(codes, logs, strict=True)]
    finally:
        luigid.terminate()
        luigid.wait(timeout=10)
    rows = check_consistent(out)
    assert sorted(r["path"] for r in rows) == sorted(PHOTOS)
    assert all(r["run"] == "processed" for r in rows)  # each image made exactly once, by one worker
    assert len(list((out / "shards").glob("*/manifest.jsonl"))) == len(
        json.loads((out / "summary.json").read_text())["shards"]
    )


@pytest.mark.slow
def test_masks_match_the_evaluate_report(tmp_path, luigi_config):
    """GT keypoints in, GT masks out: the IoU of GenerateMasks' network masks (no GrabCut refinement,
    which Evaluate's unet-coco does not do) equals Evaluate's iou_full."""
    from pipeline.evaluate import Evaluate

    luigi_config({"TrainModel": {"epochs": 1, "base_channels": 4, "depth": 2, "batch_size": 4, "num_workers": 0}})
    evaluate = Evaluate(dataset="coco", split="val", method="unet-coco")
    out = tmp_path / "masks"
    ok, summary = generate(
        input_dir=str(VAL_IMAGES),
        output_dir=str(out),
        model="unet-coco",
        keypoints=str(VAL_KEYPOINTS),
        min_keypoints=1,
        grabcut=False,
    )
    assert ok and build(evaluate)
    report = json.loads(Path(evaluate.output()["summary"].path).read_text())
    scores = {}
    with open(evaluate.output()["scores"].path) as f:
        header = f.readline().strip().split(",")
        for line in f:
            row = dict(zip(header, line.strip().split(","), strict=True))
            scores[int(row["instance_id"])] = float(row["iou_full"])
    gt = json.loads(VAL_KEYPOINTS.read_text())
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    annotations = {a["id"]: a for a in gt["annotations"]}
    results = {
        r["annotation_id"]: r for m in (out / "shards").glob("*/results.json") for r in json.loads(m.read_text())
    }
    from pycocotools import mask as mask_utils

    ours = []
    for instance_id in scores:
        ann = annotations[instance_id]
        truth = coco_instance_mask(ann["segmentation"], *sizes[ann["image_id"]])
        rle = dict(results[instance_id]["segmentation"], counts=results[instance_id]["segmentation"]["counts"].encode())
        ours.append(iou(mask_utils.decode(rle) > 0, truth > 0))
    print(
        f"GenerateMasks mean IoU {np.mean(ours):.4f} vs Evaluate iou_full {report['iou_full']['mean']:.4f} "
        f"over {len(ours)} persons"
    )
    assert len(ours) == report["instances"] > 10
    assert abs(np.mean(ours) - report["iou_full"]["mean"]) < 0.02
    assert np.abs(np.array(ours) - np.array(list(scores.values()))).max() < 0.05
    assert summary["done"] == len(
        {a["image_id"] for a in gt["annotations"] if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd")}
    )


def test_a_fifo_named_like_a_photo_is_refused_not_read(tmp_path):
    photos = copy_photos(tmp_path / "photos", PHOTOS[:1])
    os.mkfifo(photos / "pipe.jpg")  # opening it for reading would block forever
    found = folder.discover_images(photos)
    assert found.images == [PHOTOS[0]]
    assert found.refused == [{"path": "pipe.jpg", "reason": "not_a_regular_file", "detail": "not read"}]


def test_keypoint_records_with_non_finite_boxes_are_malformed(tmp_path):
    from pipeline.lib.keypoint_files import load_keypoint_file

    kps = [10.0, 10.0, 2.0] * 17
    path = tmp_path / "results.json"
    boxes = ("[NaN, 0, 10, 10]", "[0, 0, Infinity, 10]", "[0, 0, 10, 10]")
    path.write_text("[" + ", ".join(f'{{"image_id": 1, "keypoints": {kps}, "bbox": {b}}}' for b in boxes) + "]")
    index = load_keypoint_file(path)
    assert [p["reason"] for p in index.problems] == ["malformed_record", "malformed_record"]
    assert len(index.by_id[1]) == 1


def test_duplicate_image_ids_and_shared_file_names_never_move_people_between_photos(tmp_path, luigi_config, tiny_model):
    data = json.loads(VAL_KEYPOINTS.read_text())
    by_name = {im["file_name"]: im for im in data["images"]}
    first, second = by_name[PHOTOS[0]], by_name[PHOTOS[1]]
    # one id for two photos: the file's people of that id fit neither photo
    clash = {**data, "images": [first, {**second, "id": first["id"]}]}
    clash["annotations"] = [a for a in data["annotations"] if a["image_id"] == first["id"]]
    index_path = tmp_path / "clash.json"
    index_path.write_text(json.dumps(clash))
    index = folder_keypoints.load_keypoint_file(index_path)
    assert "duplicate_image_id" in {p["reason"] for p in index.problems}
    assert index.lookup(PHOTOS[0]) == (None, []) and index.lookup(PHOTOS[1]) == (None, [])

    # two photos called the same in two sub-folders; the keypoints file names just "<name>"
    photos = tmp_path / "photos"
    for sub in ("a", "b"):
        copy_photos(photos / sub, PHOTOS[:1])
    keypoints = keypoints_subset(tmp_path / "kp.json", PHOTOS[:1])
    out = tmp_path / "masks"
    ok, summary = generate(input_dir=str(photos), output_dir=str(out), model=str(tiny_model), keypoints=str(keypoints))
    assert ok and summary["skipped"] == {"ambiguous_file_name": 2} and summary["done"] == 0
    assert not list(out.rglob("*.png"))


def test_hidden_photos_and_folders_are_counted_not_read(tmp_path, luigi_config, tiny_model):
    photos = copy_photos(tmp_path / "photos", PHOTOS[:1])
    shutil.copy(VAL_IMAGES / PHOTOS[1], photos / f".{PHOTOS[1]}")
    copy_photos(photos / ".thumbnails", PHOTOS[2:3])
    found = folder.discover_images(photos)
    assert found.images == [PHOTOS[0]] and found.hidden == [".thumbnails/", f".{PHOTOS[1]}"]
    keypoints = keypoints_subset(tmp_path / "kp.json", PHOTOS[:1])
    ok, summary = generate(
        input_dir=str(photos), output_dir=str(tmp_path / "out"), model=str(tiny_model), keypoints=str(keypoints)
    )
    assert ok and summary["hidden"] == 2 and summary["images"] == 1 and summary["problems_total"] == 0
    assert "hidden, not read: 2" in format_summary(summary)


def test_read_ahead_gives_the_same_files_and_rows(tmp_path, luigi_config, tiny_model):
    """[resources] read_ahead = 1 (the default: the next photo is read and its people found in a
    second thread) and 0 (one thing at a time) write the same masks, rows and results, bad photos
    included, in the items' order."""
    photos = copy_photos(tmp_path / "photos", PHOTOS)
    jpeg = (VAL_IMAGES / PHOTOS[3]).read_bytes()
    (photos / "000_corrupt.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (photos / "zzz_text.jpg").write_text("not an image\n")
    keypoints = keypoints_subset(tmp_path / "kp.json", PHOTOS)
    outputs = {}
    for read_ahead in (0, 1):
        luigi_config({"resources": {"read_ahead": read_ahead}})
        out = tmp_path / f"masks-{read_ahead}"
        ok, summary = generate(
            input_dir=str(photos), output_dir=str(out), model=str(tiny_model), keypoints=str(keypoints), shard_size=10
        )
        assert ok and summary["done"] == 4 and summary["skipped"] == {"corrupt_image": 1, "not_an_image": 1}
        rows = [{k: v for k, v in r.items() if k != "seconds"} for r in check_consistent(out)]
        pngs = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.png"))}
        results = [json.loads(p.read_text()) for p in sorted((out / "shards").glob("*/results.json"))]
        outputs[read_ahead] = rows, pngs, results
    assert [r["path"] for r in outputs[1][0]] == sorted(r["path"] for r in outputs[1][0])
    assert outputs[0] == outputs[1]


def test_make_shard_prepares_the_next_photo_while_this_one_finishes(tmp_path):
    """The next photo's prepare (read, detector, pose) runs in another thread while the current
    photo's finish (network, files) runs: each finish waits for the next prepare to have started."""
    import threading

    from pipeline.lib.mask_shard import make_shard
    from pipeline.lib.photo_masker import PreparedPhoto

    names = [f"p{i}.jpg" for i in range(4)]
    started = {name: threading.Event() for name in names}
    threads, finished = {}, []

    class Masker:
        def reusable(self, earlier, content_hash, keypoints_id):  # noqa: ANN001, ANN202
            return False

        def prepare(self, rel, size, keypoints_id):  # noqa: ANN001, ANN202
            threads[rel] = threading.current_thread().name
            started[rel].set()
            return PreparedPhoto(rel, {"path": rel})

        def finish(self, prepared):  # noqa: ANN001, ANN202
            later = names.index(prepared.rel) + 1
            if later < len(names):
                assert started[names[later]].wait(10), "the next photo was not prepared alongside"
            finished.append(prepared.rel)
            return dict(prepared.row, outcome="done"), []

    items = [[n, 1, "", ""] for n in names]
    make_shard(Masker(), items, {}, tmp_path, "s", "s", False, lambda *a: None, read_ahead=1)  # type: ignore[arg-type]
    assert finished == names
    assert all(t.startswith("read-ahead") for t in threads.values())
    assert [r["path"] for r in files.read_jsonl(tmp_path / "manifest.jsonl")] == names
