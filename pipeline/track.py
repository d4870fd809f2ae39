"""TrackKeypoints: a person's keypoints through a clip (folder of frames or video) -> keypoints.json.

The output is a COCO annotations file over the frames, which GenerateMasks reads as it is:

    luigi --module pipeline TrackKeypoints --frames clip/ --first-keypoints frame0.json
    luigi --module pipeline GenerateMasks --input-dir clip/ --keypoints <work>/TrackKeypoints/.../keypoints.json

so that a whole clip gets masks from one annotated frame (or from none: without
--first-keypoints the built-in detector and pose estimator find the people on frame 0). A video's
frames are extracted beside keypoints.json (frames/), for GenerateMasks to read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import luigi
import numpy as np
from tqdm import tqdm

from models.people import orb_track, track_keypoints
from pipeline import config
from pipeline.core import PoseMaskTask
from pipeline.lib.files import write_json
from pipeline.lib.tracks import first_people, frame_names, is_video, iter_frames, tracks_to_coco

TRACKERS = ("flow", "orb")


class TrackKeypoints(PoseMaskTask):
    """Keypoints of every person of frame 0 through every frame (flow + Kalman, or ORB) -> keypoints.json."""

    frames = luigi.Parameter(description="a folder of frames (sorted by name) or a video file")
    first_keypoints = luigi.Parameter(
        default="", description="a COCO keypoints file naming frame 0; empty = the built-in estimator on frame 0"
    )
    tracker = luigi.ChoiceParameter(
        choices=TRACKERS, default="flow", description="flow (+ Kalman, corrected by the pose estimator) | orb"
    )
    configs = (config.track, config.detect, config.pose)

    def output(self) -> dict[str, luigi.LocalTarget]:
        return {"keypoints": self.target("keypoints.json"), "summary": self.target("summary.json")}

    def frames_folder(self) -> Path:
        """Where GenerateMasks finds the frames: the given folder, or the extracted video frames."""
        source = Path(self.frames)
        return self.work_dir() / "frames" if is_video(source) else source

    def run(self) -> None:
        from models.people import estimate_people
        from pipeline.estimators import estimators

        source = Path(self.frames)
        names = frame_names(source)
        frames = iter_frames(source, names, self.frames_folder() if is_video(source) else None)
        first = next(frames)
        if first is None:
            raise ValueError(f"{source}: the first frame {names[0]!r} cannot be read")

        def estimate(image: np.ndarray) -> list[np.ndarray]:
            detector, estimator = estimators()
            people = estimate_people(image, detector.detect, estimator.estimate, 4, False)
            return [np.asarray(p.keypoints, np.float32).reshape(17, 3) for p in people]

        people = first_people(first, names[0], Path(self.first_keypoints) if self.first_keypoints else None, estimate)
        sizes: list[tuple[int, int]] = []
        unreadable = 0

        def counted() -> Iterator[np.ndarray | None]:
            """The frames, counting the unreadable ones and noting each size (the first's for those)."""
            nonlocal unreadable
            sizes.append(first.shape[:2])
            yield first
            for n, frame in enumerate(frames, start=1):
                unreadable += frame is None
                sizes.append(sizes[0] if frame is None else frame.shape[:2])
                self.report_progress(n / len(names), f"frame {n + 1}/{len(names)}")
                yield frame

        started = time.perf_counter()
        stacked = np.concatenate(people, axis=0)
        if self.tracker == "flow":
            _, estimator = estimators()  # corrects the flow where it agrees ([track] correct)
            tracker = track_keypoints(counted(), stacked, config.track().to_config(), estimator.estimate)
        else:
            tracker = orb_track(counted(), stacked)
        per_frame = list(tqdm(tracker, total=len(names), desc=f"track {self.tracker}", unit="frame"))
        seconds = time.perf_counter() - started
        tracks = [[frame[17 * k : 17 * (k + 1)] for frame in per_frame] for k in range(len(people))]
        write_json(self.output()["keypoints"].path, tracks_to_coco(names, tracks, sizes))
        write_json(
            self.output()["summary"].path,
            {
                "frames": len(names),
                "unreadable_frames": unreadable,
                "people": len(people),
                "tracker": self.tracker,
                "first_keypoints": self.first_keypoints or "estimated",
                "frames_folder": str(self.frames_folder()),
                "seconds": round(seconds, 3),
                "frames_per_s": round(len(names) / seconds, 3) if seconds > 0 else None,
            },
        )
