"""The `posemask` command: person masks for a folder of photos, for people who don't know Luigi.

``posemask masks photos/ masks/`` runs the GenerateMasks task (pipeline/generate.py) through
Luigi, with a local scheduler unless --scheduler-url names a luigid. It works installed, from any
folder and offline: the model, the person detector and the default settings ship in the package,
and work files go under OUTPUT (unless a config file sets [work] root).
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from models.assets import SHIPPED_NAME
from pipeline.lib.night import STATE_DIR, output_owner
from pipeline.nightly import METHODS, POSEMASK

EXIT_OK = 0
EXIT_SKIPPED = 1
EXIT_USAGE = 2
EXIT_FAILED = 3
EXIT_BUSY = 4
# held by a local-scheduler night for its whole run (OUTPUT/.posemask/night.lock)
NIGHT_LOCK = "night.lock"

DESCRIPTION = """\
posemask: a mask for every person in every photo of a folder, using the pose-guided U-Net.

The folder is searched recursively for .jpg .jpeg .png .webp .bmp files (symlinks and paths that
leave it are refused). Each person gets their own mask; keypoints come from --keypoints, from a
photo.json beside each photo.jpg, or from the built-in detector (YOLOX-nano) and pose estimator
(MediaPipe Pose). A detected person whose pose cannot be estimated still gets a mask (GrabCut from
the box; "mask_source": "box" in results.json). Run it again after adding photos: only new or
changed photos are processed. Everything runs offline from files inside the package.

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
  2  usage error (bad arguments, INPUT missing, model file missing)
  3  the pipeline failed (a task raised; see the log above)
  4  another posemask masks run (local scheduler) is writing OUTPUT: nothing was done
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
        choices=METHODS,
        help=f"{POSEMASK} (default), or a whole-photo peer that needs no keypoints, to compare with",
    )
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
    return parser


def package_version() -> str:
    try:
        return version("posemask")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown (not installed)"


def check_usage(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Errors a user can fix before anything runs (argparse exits with EXIT_USAGE)."""
    if not Path(args.input_dir).is_dir():
        parser.error(f"INPUT {args.input_dir!r} is not a folder")
    if Path(args.output_dir).resolve() == Path(args.input_dir).resolve():
        parser.error("OUTPUT must not be INPUT itself (a folder inside INPUT is fine: it is skipped)")
    owner = output_owner(Path(args.output_dir))
    if owner is not None and owner != str(Path(args.input_dir).resolve()):
        parser.error(f"OUTPUT {args.output_dir!r} holds the masks of {owner}: give each photo folder its own OUTPUT")
    if args.keypoints and not Path(args.keypoints).is_file():
        parser.error(f"--keypoints {args.keypoints!r} is not a file")
    if args.config and not Path(args.config).is_file():
        parser.error(f"--config {args.config!r} is not a file")
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if args.shard_size is not None and args.shard_size < 1:
        parser.error("--shard-size must be >= 1")


def check_model(model: str, parser: argparse.ArgumentParser) -> None:
    """A named model must be trained already: posemask never trains or downloads on its own."""
    from pipeline.core import work
    from pipeline.train import MODELS

    if model == SHIPPED_NAME:
        return
    if model in MODELS:
        if not MODELS[model]().complete():
            parser.error(
                f"--model {model!r} is not trained in the work folder {work().root!r}. Train it first, in "
                "the posemask repository: `luigi --module pipeline TrainModel` (unet-coco) or "
                "`luigi --module pipeline FineTune` (unet-voc); then run posemask from there, or give "
                f"--model path/to/model.pt. Without --model the packaged model {SHIPPED_NAME!r} is used."
            )
        return
    if not Path(model).is_file():
        parser.error(f"--model {model!r} is neither {SHIPPED_NAME!r}, one of {sorted(MODELS)} nor a model file")


# The work folder this module chose for an earlier call (a later call in the same process, with
# another OUTPUT, chooses again rather than taking it for a user's setting).
_work_root_set_here: str | None = None


def configure(args: argparse.Namespace) -> None:
    """Settings for this run: packaged defaults, ./luigi.cfg, $LUIGI_CONFIG_PATH, --config; work
    files under OUTPUT unless a config file names a work folder."""
    import luigi.configuration

    from pipeline.settings import is_set, load_settings

    global _work_root_set_here
    load_settings(args.config or None)
    cfg = luigi.configuration.get_config()
    if not is_set("work", "root") or cfg.get("work", "root") == _work_root_set_here:
        if not cfg.has_section("work"):
            cfg.add_section("work")
        _work_root_set_here = str(Path(args.output_dir) / STATE_DIR / "work")
        cfg.set("work", "root", _work_root_set_here)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `posemask` console script; returns the exit code (see --help)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        check_usage(args, parser)
        configure(args)
        from pipeline.generate import GenerateMasks

        params = {
            "input_dir": args.input_dir,
            "output_dir": args.output_dir,
            "keypoints": args.keypoints,
            "print_summary": False,
            "progress": not args.quiet,
        }
        for name in ("model", "method", "crf", "grabcut", "shard_size"):
            if getattr(args, name) is not None:
                params[name] = getattr(args, name)
        task = GenerateMasks(**params)
        if task.method == POSEMASK:
            check_model(task.model, parser)
    except SystemExit as exit_:  # argparse: 0 for --help and --version, 2 for usage errors
        return int(exit_.code or 0)

    if args.scheduler_url:  # runs against one luigid share the work: the scheduler coordinates them
        return run_night(task, args)
    from pipeline.lib.files import exclusive_lock

    try:
        with exclusive_lock(Path(args.output_dir) / STATE_DIR / NIGHT_LOCK, wait=False):
            return run_night(task, args)
    except BlockingIOError:
        print(
            f"posemask: another posemask masks run is writing {args.output_dir}; wait for it, or run both "
            "against one luigid (--scheduler-url) to share the work",
            file=sys.stderr,
        )
        return EXIT_BUSY


def run_night(task: object, args: argparse.Namespace) -> int:
    """Build GenerateMasks and print its summary; the exit code."""
    import luigi

    from pipeline.lib.night import format_summary

    scheduler = {"scheduler_url": args.scheduler_url} if args.scheduler_url else {"local_scheduler": True}
    try:
        result = luigi.build(
            [task],
            workers=args.workers,
            detailed_summary=True,
            log_level="ERROR" if args.quiet else "WARNING",
            **scheduler,
        )
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
