"""TrackKeypoints through Luigi: a clip of known warps of a sample photo, from a folder and a video,
and GenerateMasks reading its keypoints.json as it is."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.network.checkpoints import save_model
from models.network.unet import ModelConfig, PoseUNet
from pipeline import GenerateMasks, TrackKeypoints
from tests.conftest import SAMPLE, build

SHIFTS = [(2.0 * t, 1.0 * t) for t in range(5)]


@pytest.fixture
def clip(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """frames/frame_0*.jpg (the photo moving right and down), a COCO file for frame 0, its keypoints."""
    data = json.loads((SAMPLE / "coco" / "annotations" / "person_keypoints_val2017.json").read_text())
    ann = max((a for a in data["annotations"] if a["num_keypoints"] >= 12), key=lambda a: a["area"])
    info = next(i for i in data["images"] if i["id"] == ann["image_id"])
    image = cv2.imread(str(SAMPLE / "coco" / "val2017" / info["file_name"]))
    h, w = image.shape[:2]
    folder = tmp_path / "frames"
    folder.mkdir()
    for t, (sx, sy) in enumerate(SHIFTS):
        moved = cv2.warpAffine(image, np.float32([[1, 0, sx], [0, 1, sy]]), (w, h), borderMode=cv2.BORDER_REFLECT)
        cv2.imwrite(str(folder / f"frame_{t:03d}.jpg"), moved, [cv2.IMWRITE_JPEG_QUALITY, 95])
    first = {
        "images": [{"id": 1, "file_name": "frame_000.jpg", "height": h, "width": w}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "keypoints": ann["keypoints"]}],
        "categories": [{"id": 1, "name": "person"}],
    }
    (tmp_path / "first.json").write_text(json.dumps(first))
    return folder, tmp_path / "first.json", np.asarray(ann["keypoints"], np.float32).reshape(17, 3)


def test_a_clip_gets_keypoints_on_every_frame_and_masks_from_them(luigi_config, clip, tmp_path) -> None:
    folder, first, kps = clip
    # the flow alone: the estimator's correction would move the annotated joints to its own idea of them
    luigi_config({"track": {"flow": "farneback", "correct": "false"}})
    task = TrackKeypoints(frames=str(folder), first_keypoints=str(first))
    assert build(task)
    flow_only = task.output()["keypoints"].path
    tracked = json.loads(Path(flow_only).read_text())
    assert [im["file_name"] for im in tracked["images"]] == [f"frame_{t:03d}.jpg" for t in range(len(SHIFTS))]
    vis = kps[:, 2] > 0
    for ann, shift in zip(tracked["annotations"], SHIFTS, strict=True):
        moved = np.asarray(ann["keypoints"], np.float32).reshape(17, 3)
        assert np.linalg.norm(moved[vis, :2] - (kps[vis, :2] + shift), axis=1).mean() < 1.5
    summary = json.loads(Path(task.output()["summary"].path).read_text())
    assert summary["frames"] == len(SHIFTS) and summary["unreadable_frames"] == 0 and summary["people"] == 1

    luigi_config({"track": {"correct": "true"}})  # the default: corrected by the pose estimator
    corrected = TrackKeypoints(frames=str(folder), first_keypoints=str(first))
    assert corrected.output()["keypoints"].path != flow_only  # [track] is in the path
    assert build(corrected)
    last = json.loads(Path(corrected.output()["keypoints"].path).read_text())["annotations"][-1]
    moved = np.asarray(last["keypoints"], np.float32).reshape(17, 3)
    error = np.linalg.norm(moved[vis, :2] - (kps[vis, :2] + SHIFTS[-1]), axis=1)
    assert 0.5 < error.mean() < 25.0  # pulled towards MediaPipe's joints, still on the person

    torch.manual_seed(0)
    cfg = ModelConfig(base_channels=4, depth=2)
    save_model(tmp_path / "tiny.pt", PoseUNet(cfg), cfg, {})
    masks = GenerateMasks(
        input_dir=str(folder),
        output_dir=str(tmp_path / "masks"),
        keypoints=flow_only,
        model=str(tmp_path / "tiny.pt"),
        progress=False,
    )
    assert build(masks)
    night = json.loads(Path(masks.output().path).read_text())
    assert night["done"] == len(SHIFTS) and night["problems_total"] == 0


def test_a_video_is_tracked_and_its_frames_extracted_and_a_broken_frame_is_bridged(luigi_config, clip, tmp_path):
    folder, first, _ = clip
    frames = sorted(folder.glob("*.jpg"))
    (folder / "frame_002.jpg").write_bytes(b"not a jpeg")  # an unreadable frame in the folder
    luigi_config({"track": {"flow": "farneback"}})
    task = TrackKeypoints(frames=str(folder), first_keypoints=str(first))
    assert build(task)
    assert json.loads(Path(task.output()["summary"].path).read_text())["unreadable_frames"] == 1
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, cv2.imread(str(frames[0])).shape[1::-1])
    for path in frames:
        image = cv2.imread(str(path))
        writer.write(image if image is not None else cv2.imread(str(frames[0])))
    writer.release()
    (tmp_path / "first_video.json").write_text(first.read_text().replace("frame_000.jpg", "frame_000000.jpg"))
    from_video = TrackKeypoints(frames=str(video), first_keypoints=str(tmp_path / "first_video.json"), tracker="orb")
    assert build(from_video)
    extracted = sorted(p.name for p in from_video.frames_folder().glob("*.jpg"))
    assert extracted == [f"frame_{t:06d}.jpg" for t in range(len(frames))]
    assert len(json.loads(Path(from_video.output()["keypoints"].path).read_text())["images"]) == len(frames)


def test_without_first_keypoints_nobody_found_is_a_clear_failure(luigi_config, tmp_path) -> None:
    folder = tmp_path / "empty_scene"
    folder.mkdir()
    for t in range(2):
        cv2.imwrite(str(folder / f"{t}.jpg"), np.full((64, 64, 3), 120, np.uint8))
    assert not build(TrackKeypoints(frames=str(folder)))
