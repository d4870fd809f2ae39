"""The `posemask masks` run: check the arguments, configure, build GenerateMasks through Luigi.

``posemask masks photos/ masks/`` (parsed by posemask/cli.py, which stays light) runs the
GenerateMasks task (pipeline/generate.py) through Luigi, with a local scheduler unless
--scheduler-url names a luigid. It works installed, from any folder and offline: the model, the
person detector and the default settings ship in the package, and work files go under OUTPUT
(unless a config file sets [work] root).

    run_masks(args, parser)   the exit code of one run (posemask/exits.py, as `posemask --help` lists them)

The command line is parsed by posemask.cli.main, which calls run_masks; this module never imports
it back (the exit codes live in posemask/exits.py, the night's lock name in pipeline/lib/night.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from models.utils import SHIPPED_NAME
from pipeline.estimators import POSEMASK
from pipeline.lib.night import NIGHT_LOCK, STATE_DIR, output_owner
from posemask.exits import EXIT_BUSY, EXIT_FAILED, EXIT_OK, EXIT_SKIPPED


def check_usage(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Errors a user can fix before anything runs (argparse exits with 2, EXIT_USAGE)."""
    if not Path(args.input_dir).is_dir():
        parser.error(f"INPUT {args.input_dir!r} is not a folder")
    if Path(args.output_dir).exists() and not Path(args.output_dir).is_dir():
        parser.error(f"OUTPUT {args.output_dir!r} is a file, not a folder")
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


def check_writable(output: Path) -> None:
    """Create OUTPUT's state folder and a probe file in it (OSError when OUTPUT cannot be written:
    a read-only mount, no permission, a path through a file)."""
    import tempfile

    state = output / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=state, prefix=".write-probe-"):
        pass


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


def run_masks(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """One `posemask masks` run from parsed arguments; the exit code (usage errors exit through
    parser.error, caught here)."""
    try:
        check_usage(args, parser)
        configure(args)
        from pipeline.generate import GenerateMasks, night_settings
        from pipeline.settings import check_settings

        problems = check_settings(night_settings())
        if problems:
            parser.error("settings out of range or of the wrong type:\n  " + "\n  ".join(problems))
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
    except SystemExit as exit_:  # parser.error: 2
        return int(exit_.code or 0)

    try:  # before any lock or state file: a read-only or forbidden OUTPUT is named, not a traceback
        check_writable(Path(args.output_dir))
    except OSError as err:
        print(f"posemask: cannot write to OUTPUT {args.output_dir}: {err.strerror or err}", file=sys.stderr)
        return EXIT_FAILED
    from pipeline.scheduler import scheduler_params

    scheduler = scheduler_params(args.scheduler_url)
    if not scheduler["local_scheduler"]:  # runs against one luigid share the work: it coordinates them
        return run_central_night(task, args, scheduler)
    from pipeline.lib.files import exclusive_lock

    try:
        with exclusive_lock(Path(args.output_dir) / STATE_DIR / NIGHT_LOCK, wait=False):
            return run_night(task, args, scheduler)
    except BlockingIOError:
        print(
            f"posemask: another posemask masks run is writing {args.output_dir}; wait for it, or run both "
            "against one luigid (--scheduler-url) to share the work",
            file=sys.stderr,
        )
        return EXIT_BUSY


def run_central_night(task: object, args: argparse.Namespace, scheduler: dict) -> int:
    """A night under a central luigid: refused at once (EXIT_FAILED) when it does not answer, and
    stopped within seconds when it stops answering mid-night (the rerun continues). No night lock:
    the scheduler hands each shard to one worker, and each shard's own lock keeps two workers
    from computing it twice."""
    from pipeline.scheduler import SchedulerUnreachableError, SchedulerWatchdog, check_reachable, scheduler_address

    address = scheduler_address(args.scheduler_url)
    try:
        check_reachable(address, timeout=3.0)
    except SchedulerUnreachableError as err:
        print(f"posemask: {err}: start luigid there, or run without a central scheduler", file=sys.stderr)
        return EXIT_FAILED
    import luigi.configuration

    # a worker whose remaining tasks another worker is running waits for them (GenerateMasks'
    # summary is written by whichever worker gets it) instead of leaving before the night is done
    luigi.configuration.get_config().set("worker", "keep_alive", "true")
    with SchedulerWatchdog(address) as watchdog:
        code = run_night(task, args, scheduler, watchdog)
    return code


def _night_done_statuses() -> tuple:
    import luigi

    codes = luigi.LuigiStatusCode
    # NOT_RUN: under a central scheduler, tasks another worker ran were "not granted" to this one
    return (codes.SUCCESS, codes.SUCCESS_WITH_RETRY, codes.NOT_RUN)


def shards_run_here(worker: object) -> int:
    """How many MaskShard tasks this process (or the workers it forked) ran in a build."""
    from luigi.execution_summary import _partition_tasks  # Luigi's own execution summary's sets

    return sum(1 for t in _partition_tasks(worker)["completed"] if t.task_family == "MaskShard")


def build_night(task: object, args: argparse.Namespace, scheduler: dict) -> tuple[object, int]:
    """luigi.build the night -> (the last build's result, MaskShards this process ran). Under a
    central scheduler the tasks other workers ran are "not granted" to this one (Luigi's NOT_RUN),
    and it may run out of work before the night is done: it builds again, every 2 s, until
    GenerateMasks is complete (run by whichever worker gets it: this one too, when the one that
    had it disappeared) or a build fails."""
    import time

    import luigi

    shards_here = 0
    while True:
        result = luigi.build(
            [task],
            workers=args.workers,
            detailed_summary=True,
            log_level="ERROR" if args.quiet else "WARNING",
            **scheduler,
        )
        shards_here += shards_run_here(result.worker)
        if scheduler["local_scheduler"] or result.status not in _night_done_statuses() or task.complete():
            return result, shards_here
        time.sleep(2.0)


def scheduler_lost(detail: str) -> int:
    """Say that the central scheduler stopped answering mid-night; EXIT_FAILED."""
    print(
        f"posemask: the scheduler stopped answering ({detail}); the night stopped (finished photos are "
        "kept: run it again to continue)",
        file=sys.stderr,
    )
    return EXIT_FAILED


def run_night(task: object, args: argparse.Namespace, scheduler: dict, watchdog: object = None) -> int:
    """Build GenerateMasks and print its summary; the exit code. SIGTERM and SIGINT stop it
    cleanly (no temporary file, the lock released, one line said): exit 128 + the signal."""
    import signal

    from pipeline.lib.night import format_summary
    from pipeline.lib.stopping import NightStopped, exit_code_of, stop_on_signals

    try:
        with stop_on_signals():
            result, shards_here = build_night(task, args, scheduler)
    except KeyboardInterrupt as stop:
        if watchdog is not None and getattr(watchdog, "lost", False):
            return scheduler_lost(f"no connection to {args.scheduler_url or 'the configured address'}")
        signum = stop.signum if isinstance(stop, NightStopped) else int(signal.SIGINT)
        print(
            f"posemask: stopped by {signal.Signals(signum).name}; finished photos are kept, "
            "the next run continues from them",
            file=sys.stderr,
        )
        return exit_code_of(signum)
    except Exception as err:  # noqa: BLE001 - any failure to schedule is a pipeline failure
        from luigi.rpc import RPCError

        if isinstance(err, RPCError):
            return scheduler_lost(str(err))
        print(f"posemask: the pipeline failed: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_FAILED
    if result.status not in _night_done_statuses() or not task.complete():
        print(f"posemask: the pipeline failed ({result.status.name}):\n{result.summary_text}", file=sys.stderr)
        return EXIT_FAILED
    try:
        summary = json.loads(Path(task.output().path).read_text())
    except (OSError, ValueError) as err:
        print(f"posemask: no summary after the run: {err}", file=sys.stderr)
        return EXIT_FAILED
    print(format_summary(summary))
    if not scheduler["local_scheduler"]:
        print(f"this worker computed {shards_here} of the night's {len(summary['shards'])} shards")
    return EXIT_SKIPPED if summary.get("problems_total", 0) else EXIT_OK
