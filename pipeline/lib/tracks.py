"""A clip's keypoints, frame by frame, as plain code (TrackKeypoints in pipeline/track.py runs it).

    frame_names(source)        the frames of a folder (sorted image files) or a video file
    iter_frames(source, ...)   (H,W,3) RGB per frame (None when one cannot be read); a video's
                               frames are also written to `extract_to` as frame_NNNNNN.jpg
    first_people(...)          the keypoints of frame 0: from a COCO keypoints file or the estimator
    tracks_to_coco(...)        COCO annotations JSON over the frames, read by GenerateMasks as it is

Several people are tracked independently, each from their frame-0 keypoints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np

from pipeline.lib.files import atomic_path
from pipeline.lib.folder import IMAGE_EXTENSIONS
from pipeline.lib.images import read_rgb
from pipeline.lib.keypoint_files import load_keypoint_file

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm"})
FRAME_NAME = "frame_{:06d}.jpg"


def is_video(source: Path) -> bool:
    return source.is_file() and source.suffix.lower() in VIDEO_EXTENSIONS


def frame_names(source: Path) -> list[str]:
    """The frames' file names: a folder's image files in name order, or frame_NNNNNN.jpg of a video."""
    if source.is_dir():
        names = sorted(p.name for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not names:
            raise ValueError(f"{source}: no image files ({sorted(IMAGE_EXTENSIONS)})")
        return names
    if not is_video(source):
        raise ValueError(f"{source} is neither a folder of frames nor a video ({sorted(VIDEO_EXTENSIONS)})")
    capture = cv2.VideoCapture(str(source))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    if count <= 0:
        raise ValueError(f"{source}: the video has no readable frames")
    return [FRAME_NAME.format(i) for i in range(count)]


def iter_frames(source: Path, names: list[str], extract_to: Path | None = None) -> Iterator[np.ndarray | None]:
    """RGB frames in order (None for one that cannot be read); a video's frames are written to
    `extract_to` (atomically, JPEG) so that GenerateMasks can read the clip as a folder."""
    if source.is_dir():
        for name in names:
            yield read_rgb(source / name)
        return
    capture = cv2.VideoCapture(str(source))
    try:
        for name in names:
            ok, bgr = capture.read()
            if not ok:
                yield None
                continue
            if extract_to is not None:
                with atomic_path(extract_to / name) as tmp:
                    cv2.imwrite(str(tmp), bgr)
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def first_people(
    first_frame: np.ndarray,
    first_name: str,
    keypoints_file: Path | None,
    estimate: Callable[[np.ndarray], list[np.ndarray]],
) -> list[np.ndarray]:
    """(17,3) COCO keypoints of each person on frame 0: from the file (matched by the frame's file
    name, or its number), else from `estimate` (the built-in detector + pose estimator)."""
    if keypoints_file is not None:
        index = load_keypoint_file(keypoints_file)
        _, people = index.lookup(first_name)
        if not people:
            raise ValueError(f"{keypoints_file} has no person for the first frame {first_name!r}")
        return [np.asarray(p.keypoints, np.float32).reshape(17, 3) for p in people]
    people = estimate(first_frame)
    if not people:
        raise ValueError(f"no person found on the first frame {first_name!r}: give its keypoints in a file")
    return people


def tracks_to_coco(names: list[str], tracks: list[list[np.ndarray]], sizes: list[tuple[int, int]]) -> dict:
    """COCO annotations JSON: one image per frame (id = frame number + 1), one annotation per person
    and frame with >= 1 tracked joint; `track_id` names the person across frames."""
    images = [
        {"id": i + 1, "file_name": name, "height": h, "width": w}
        for i, (name, (h, w)) in enumerate(zip(names, sizes, strict=True))
    ]
    annotations = []
    for person, track in enumerate(tracks):
        for frame, keypoints in enumerate(track):
            visible = keypoints[:, 2] > 0
            if not visible.any():
                continue
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": frame + 1,
                    "category_id": 1,
                    "track_id": person,
                    "keypoints": np.round(keypoints, 2).reshape(-1).tolist(),
                    "num_keypoints": int(visible.sum()),
                    "iscrowd": 0,
                }
            )
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "person"}]}
