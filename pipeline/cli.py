"""The `posemask` command: person masks for a folder of photos, for people who don't know Luigi.

``posemask masks photos/ masks/`` runs the GenerateMasks task (pipeline/generate.py) through
Luigi, with a local scheduler unless --scheduler-url names a luigid.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_SKIPPED = 1
EXIT_USAGE = 2
EXIT_FAILED = 3

DESCRIPTION = """\
posemask: a mask for every person in every photo of a folder, using the pose-guided U-Net.

The folder is searched recursively for .jpg .jpeg .png .webp .bmp files (symlinks and paths that
leave it are refused). Each person gets their own mask; keypoints come from --keypoints, from a
photo.json beside each photo.jpg, or from the built-in pose estimator (MediaPipe). Run it again
after adding photos: only new or changed photos are processed.

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
  luigid --port 8082 &   # then, on every machine sharing the folders:
  posemask masks /shared/photos /shared/masks --scheduler-url http://host:8082 --workers 2

exit codes:
  0  every photo has its masks (or has no person in it)
  1  finished, but some files were skipped (corrupt, not an image, too large, ...): see summary.json
  2  usage error (bad arguments, INPUT missing, model file missing)
  3  the pipeline failed (a task raised; see the log above)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="posemask", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    masks = commands.add_parser("masks", help="masks for every photo of a folder", description=DESCRIPTION,
                                epilog=MASKS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    masks.add_argument("input_dir", metavar="INPUT", help="folder of photos (searched recursively)")
    masks.add_argument("output_dir", metavar="OUTPUT", help="folder for masks, manifests and summary.json")
    masks.add_argument("--keypoints", default="", metavar="FILE",
                       help="COCO annotations or results JSON with the people's keypoints, matched by file "
                            "name (or image id = file stem); default: photo.json beside each photo, else "
                            "the built-in pose estimator")  # fmt: skip
    masks.add_argument("--model", default="unet-coco", metavar="MODEL",
                       help="unet-coco (trained on COCO; trained first if missing), unet-voc (fine-tuned on "
                            "VOC) or the path of a model.pt (default: %(default)s)")  # fmt: skip
    masks.add_argument("--crf", action="store_true", help="refine the masks with the dense CRF (slower)")
    masks.add_argument("--workers", type=int, default=1, metavar="N", help="parallel shards (default: 1)")
    masks.add_argument("--shard-size", type=int, default=None, metavar="N",
                       help="at most N photos per shard (default: luigi.cfg [GenerateMasks] shard_size)")
    masks.add_argument("--scheduler-url", default="", metavar="URL",
                       help="central luigid scheduler, e.g. http://host:8082 (default: a local scheduler)")
    masks.add_argument("--quiet", action="store_true", help="print only the summary")
    return parser


def check_usage(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Errors a user can fix before anything runs (argparse exits with EXIT_USAGE)."""
    from pipeline.predict import MODELS

    if not Path(args.input_dir).is_dir():
        parser.error(f"INPUT {args.input_dir!r} is not a folder")
    if args.keypoints and not Path(args.keypoints).is_file():
        parser.error(f"--keypoints {args.keypoints!r} is not a file")
    if args.model not in MODELS and not Path(args.model).is_file():
        parser.error(f"--model {args.model!r} is neither one of {sorted(MODELS)} nor a model file")
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if args.shard_size is not None and args.shard_size < 1:
        parser.error("--shard-size must be >= 1")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `posemask` console script; returns the exit code (see --help)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        check_usage(args, parser)
    except SystemExit as exit_:  # argparse: 0 for --help, 2 for usage errors
        return int(exit_.code or 0)

    import luigi

    from pipeline.generate import GenerateMasks, format_summary

    params = {"input_dir": args.input_dir, "output_dir": args.output_dir, "model": args.model,
              "keypoints": args.keypoints, "crf": args.crf, "print_summary": False}  # fmt: skip
    if args.shard_size is not None:
        params["shard_size"] = args.shard_size
    scheduler = {"scheduler_url": args.scheduler_url} if args.scheduler_url else {"local_scheduler": True}
    try:
        task = GenerateMasks(**params)
        result = luigi.build([task], workers=args.workers, detailed_summary=True,
                             log_level="ERROR" if args.quiet else "WARNING", **scheduler)  # fmt: skip
    except Exception as err:  # noqa: BLE001 - any failure to schedule is a pipeline failure
        print(f"posemask: the pipeline failed: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_FAILED
    if result.status not in (luigi.LuigiStatusCode.SUCCESS, luigi.LuigiStatusCode.SUCCESS_WITH_RETRY):
        print(f"posemask: the pipeline failed ({result.status.name}):\n{result.summary_text}", file=sys.stderr)
        return EXIT_FAILED
    try:
        summary = json.loads(Path(task.output().path).read_text())
    except (OSError, ValueError) as err:
        print(f"posemask: no summary after the run: {err}", file=sys.stderr)
        return EXIT_FAILED
    print(format_summary(summary))
    return EXIT_SKIPPED if summary.get("problems_total", 0) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
