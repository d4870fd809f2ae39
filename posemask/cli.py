"""The `posemask` command line, kept light: ``posemask --help`` and usage errors import nothing
but the standard library (the pipeline, Luigi, torch and OpenCV load only when a night runs).

    main(argv)       entry point of the console script; returns the exit code
    build_parser()   the argparse parser (every option, its help, the exit codes)
    add_what_arguments(masks) / add_how_arguments(masks)   the `masks` command's arguments, by kind
    METHOD_NAMES     what --method accepts (pipeline.estimators.METHODS, checked by a test)

The run itself is pipeline.cli.run_masks; the exit codes are posemask/exits.py's.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version

from models.utils import SHIPPED_NAME

POSEMASK = "posemask"
# posemask itself, then the whole-photo peers of models.people.peers.PEERS (sorted): kept here as names so
# that building the parser imports no model code; tests/pipeline/test_cli.py checks they agree
METHOD_NAMES: tuple[str, ...] = (POSEMASK, "deeplab", "selfie")

DESCRIPTION = """\
posemask: a mask for every person in every photo of a folder, using the pose-guided U-Net.

The folder is searched recursively for .jpg .jpeg .png .webp .bmp files (symlinks and paths that
leave it are refused). Each person gets their own mask; keypoints come from --keypoints, from a
photo.json beside each photo.jpg, or from the built-in detector (YOLOX-nano) and pose estimator
(MediaPipe Pose). A detected person whose pose cannot be estimated still gets a mask (the
network from a prior of the box; "mask_source": "box" in results.json). Run it again after adding
photos: only new or changed photos are processed, and lost masks are made again. Everything runs
offline from files inside the package.

settings: the package's defaults (pipeline/defaults.cfg), overridden by luigi.cfg in the current
folder, then $LUIGI_CONFIG_PATH, then --config FILE.

commands:
  masks INPUT OUTPUT   make the masks of every photo under INPUT, written under OUTPUT
"""

MASKS_EPILOG = """\
outputs (mirroring INPUT under OUTPUT):
  <photo>.person<k>.png   mask of person k (0 / 255, full image size)
  <photo>.labels.png      instance labels: 0 background, k+1 person k
  shards/*/results.json   COCO results (image_id, file_name, RLE segmentation, keypoints, score)
  shards/*/manifest.jsonl one row per photo: size, content hash, model, people, outcome, reason
  summary.json            processed, skipped by reason, no person found, seconds, images/s

examples:
  posemask masks photos/ masks/
  posemask masks photos/ masks/ --keypoints person_keypoints_val2017.json --crf
  posemask masks photos/ masks/ --model runs/model.pt --workers 2
  posemask masks photos/ masks-selfie/ --method selfie      # a whole-photo peer, to compare
  luigid --port 8082 &   # then, on every machine sharing the folders:
  posemask masks /shared/photos /shared/masks --scheduler-url http://host:8082 --workers 2

exit codes:
  0  every photo has its masks (or has no person in it)
  1  finished, but some files were skipped (corrupt, not an image, too large, ...): see summary.json
  2  usage error (bad arguments, INPUT missing, OUTPUT a file, model file missing)
  3  the pipeline failed (a task raised; see the log above), OUTPUT cannot be written, or the
     central scheduler (--scheduler-url) does not answer or stopped answering
  4  another posemask masks run (local scheduler) is writing OUTPUT: nothing was done
  130, 143  stopped by SIGINT (Ctrl-C) / SIGTERM (e.g. `timeout`): finished photos are kept and
     the next run continues from them (no temporary file is left, the lock is released)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="posemask", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"posemask {package_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    masks = commands.add_parser(
        "masks",
        help="masks for every photo of a folder",
        description=DESCRIPTION,
        epilog=MASKS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_what_arguments(masks)
    add_how_arguments(masks)
    return parser


def add_what_arguments(masks: argparse.ArgumentParser) -> None:
    """`posemask masks` arguments that say what is made: folders, keypoints, model, method."""
    masks.add_argument("input_dir", metavar="INPUT", help="folder of photos (searched recursively)")
    masks.add_argument("output_dir", metavar="OUTPUT", help="folder for masks, manifests and summary.json")
    masks.add_argument(
        "--keypoints",
        default="",
        metavar="FILE",
        help="COCO annotations or results JSON with the people's keypoints, matched by file "
        "name (or image id = file stem); default: photo.json beside each photo, else "
        "the built-in pose estimator",
    )
    masks.add_argument(
        "--model",
        default=None,
        metavar="MODEL",
        help=f"{SHIPPED_NAME} (the model inside the package, the default), unet-coco / unet-voc "
        "(trained by the DAG in the work folder: luigi --module pipeline TrainModel) or "
        "the path of a model.pt",
    )
    masks.add_argument(
        "--method",
        default=None,
        choices=METHOD_NAMES,
        help=f"{POSEMASK} (default), or a whole-photo peer that needs no keypoints, to compare with",
    )


def add_how_arguments(masks: argparse.ArgumentParser) -> None:
    """`posemask masks` options that say how it runs: refinements, settings, workers, scheduler, output."""
    masks.add_argument(
        "--crf",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="refine the masks with the dense CRF (slower; default: [GenerateMasks] crf)",
    )
    masks.add_argument(
        "--grabcut",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="refine each mask by GrabCut in the person's box (default: [GenerateMasks] grabcut)",
    )
    masks.add_argument(
        "--config", default="", metavar="FILE", help="a luigi.cfg whose settings override the defaults and ./luigi.cfg"
    )
    masks.add_argument("--workers", type=int, default=1, metavar="N", help="parallel shards (default: 1)")
    masks.add_argument(
        "--shard-size",
        type=int,
        default=None,
        metavar="N",
        help="at most N photos per shard (default: luigi.cfg [GenerateMasks] shard_size)",
    )
    masks.add_argument(
        "--scheduler-url",
        default="",
        metavar="URL",
        help="central luigid scheduler, e.g. http://host:8082 (default: a local scheduler)",
    )
    masks.add_argument("--quiet", action="store_true", help="no progress bars or log lines: print only the summary")


def package_version() -> str:
    try:
        return version("posemask")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown (not installed)"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `posemask` console script; returns the exit code (see --help)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse: 0 for --help and --version, 2 for usage errors
        return int(exit_.code or 0)
    from pipeline.cli import run_masks  # the pipeline loads only for a run

    return run_masks(args, parser)


if __name__ == "__main__":
    sys.exit(main())
