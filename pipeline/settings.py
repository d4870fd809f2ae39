"""Where posemask's settings come from, lowest priority first.

1. ``pipeline/defaults.cfg``: the packaged defaults (every section a posemask task reads), so an
   installed ``posemask`` or ``luigi --module pipeline ...`` works from any folder.
2. Luigi's own files: ``/etc/luigi/luigi.cfg``, then ``luigi.cfg`` in the current folder (the
   repository's holds what the demo sets: the work folder).
3. ``$LUIGI_CONFIG_PATH``, then a file given with ``posemask --config FILE``.

A later file overrides single values of an earlier one. ``install_defaults`` runs when the
``pipeline`` package is imported, before any task or config section is read.

The local scheduler is the default (``pipeline/local_scheduler.cfg``, read right after the
defaults) only where nothing names a central one: Luigi's ``--scheduler-host/port/url`` on the
command line or a config file's ``[core]`` scheduler options (pipeline/scheduler.py).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import luigi
import luigi.configuration
from luigi.configuration.cfg_parser import LuigiConfigParser

DEFAULTS = Path(__file__).resolve().with_name("defaults.cfg")
LOCAL_SCHEDULER = Path(__file__).resolve().with_name("local_scheduler.cfg")
RPC_OPTIONS = {"rpc_connect_timeout", "rpc_retry_attempts", "rpc_retry_wait"}


def install_defaults(argv: list[str] | None = None) -> None:
    """Put the packaged defaults first in Luigi's config search path and re-read it (idempotent);
    then the local scheduler default, unless `argv` (default sys.argv) or a config file names a
    central scheduler."""
    from luigi.interface import core

    from pipeline.scheduler import names_a_scheduler

    # [core] rpc-* are Luigi's too, read by its RemoteScheduler, not by the `core` config class:
    # without this, every run warns that they are not consumed
    core.ignore_unconsumed = set(getattr(core, "ignore_unconsumed", set())) | RPC_OPTIONS
    paths = LuigiConfigParser._config_paths
    if str(DEFAULTS) in paths:
        return
    paths.insert(0, str(DEFAULTS))
    LuigiConfigParser.reload()
    if not names_a_scheduler(sys.argv if argv is None else argv):
        paths.insert(1, str(LOCAL_SCHEDULER))
        LuigiConfigParser.reload()


def load_settings(extra: str | Path | None = None) -> None:
    """install_defaults, then `extra` (a .cfg file) on top of everything else when given."""
    install_defaults()
    if extra:
        path = Path(extra)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        luigi.configuration.add_config_path(str(path))


def _type_phrase(param: luigi.Parameter) -> str:
    if isinstance(param, luigi.ChoiceParameter):
        return f"one of {', '.join(sorted(map(str, param._choices)))}"
    for kind, phrase in (
        (luigi.BoolParameter, "true or false"),
        (luigi.IntParameter, "an integer"),
        (luigi.FloatParameter, "a number"),
        (luigi.DictParameter, "a JSON object"),
        (luigi.ListParameter, "a JSON list"),
    ):
        if isinstance(param, kind):
            return phrase
    return "a value"


def _range_phrase(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"in [{low:g}, {high:g}]"
    return f">= {low:g}" if low is not None else f"<= {high:g}"


def check_settings(classes: Iterable[type]) -> list[str]:
    """Every value a config file sets for these luigi.Config sections or tasks (section = class
    name), parsed by its parameter's type and checked against its allowed range
    (pipeline.config.with_range) -> one message per problem, "[section] key = value: must be ...".
    Luigi would take an out-of-range value as it is, and fail on a non-number deep inside a task."""
    cfg = luigi.configuration.get_config()
    problems = []
    for cls in classes:
        section = cls.get_task_family()
        if not cfg.has_section(section):
            continue
        for name, param in cls.get_params():
            key = next((k for k in (name, name.replace("_", "-")) if cfg.has_option(section, k)), None)
            if key is None:
                continue
            raw = cfg.get(section, key)
            try:
                value = param.normalize(param.parse(raw))
            except Exception:  # noqa: BLE001 - whatever the parameter type raises: not of its type
                problems.append(f"[{section}] {key} = {raw}: must be {_type_phrase(param)}")
                continue
            low, high = getattr(param, "allowed_range", (None, None))
            if (low is not None and value < low) or (high is not None and value > high):
                problems.append(f"[{section}] {key} = {raw}: must be {_range_phrase(low, high)}")
    return problems


def is_set(section: str, option: str) -> bool:
    """Whether a config file (not only a code default) sets [section] option."""
    return luigi.configuration.get_config().has_option(section, option)


def config_text() -> str:
    """Every setting in force, as one INI text (for the report)."""
    cfg = luigi.configuration.get_config()
    lines = []
    for section in cfg.sections():
        lines.append(f"[{section}]")
        lines += [f"{k} = {v}" for k, v in cfg.items(section)]
        lines.append("")
    return "\n".join(lines)


@contextlib.contextmanager
def settings_overridden_by(extra: str | Path) -> Iterator[None]:
    """Inside the block, the settings of the .cfg file `extra` override everything else; after
    it, they are gone again (bench/nightly_quality.py builds its "before" variant this way)."""
    path = Path(extra)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    cfg = luigi.configuration.get_config()
    # re-reading the files on the way out would keep the block's values (reading only adds): the
    # settings as they were are put back instead
    saved = {section: dict(cfg.items(section, raw=True)) for section in cfg.sections()}
    paths = LuigiConfigParser._config_paths
    paths.append(str(path))
    LuigiConfigParser.reload()
    try:
        yield
    finally:
        paths.remove(str(path))
        for section in cfg.sections():
            cfg.remove_section(section)
        for section, values in saved.items():
            cfg.add_section(section)
            for key, value in values.items():
                cfg.set(section, key, value)
