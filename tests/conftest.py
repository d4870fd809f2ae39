"""Shared fixtures: the real sample, and an isolated Luigi configuration per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import luigi
import luigi.configuration
import pytest
import torch
from luigi.task_register import Register

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"

os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ logging
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Test models are tiny: one intra-op thread beats two on a 2-core machine that also runs the
# process pools of the stages under test.
torch.set_num_threads(1)


@pytest.fixture
def sample() -> Path:
    """The real sample dataset shipped in the repository."""
    return SAMPLE


def set_luigi_config(values: dict[str, dict[str, object]]) -> dict[tuple[str, str], str | None]:
    """Set luigi.cfg values in memory; return what was there before (None = absent)."""
    cfg = luigi.configuration.get_config()
    previous: dict[tuple[str, str], str | None] = {}
    for section, options in values.items():
        if not cfg.has_section(section):
            cfg.add_section(section)
        for key, value in options.items():
            previous[(section, key)] = cfg.get(section, key, None)
            cfg.set(section, key, str(value))
    Register.clear_instance_cache()  # luigi caches Config/Task instances with their old values
    return previous


def restore_luigi_config(previous: dict[tuple[str, str], str | None]) -> None:
    cfg = luigi.configuration.get_config()
    for (section, key), value in previous.items():
        if value is None:
            cfg.remove_option(section, key)
            if not cfg.options(section):  # a section the test added (e.g. [dataset.NAME]) goes too
                cfg.remove_section(section)
        else:
            cfg.set(section, key, value)
    Register.clear_instance_cache()


@pytest.fixture
def luigi_config(tmp_path: Path) -> Iterator:
    """Point every output at tmp_path and the datasets at the shipped sample; yields a setter."""
    base = {
        "work": {"root": tmp_path / "work"},
        "coco": {"root": SAMPLE / "coco"},
        "ochuman": {"root": SAMPLE / "ochuman"},
        "voc": {"root": SAMPLE / "voc"},
        "cache": {"processes": 2, "window": 16},
    }
    saved = [set_luigi_config(base)]

    def setter(values: dict[str, dict[str, object]]) -> None:
        saved.append(set_luigi_config(values))

    yield setter
    for previous in reversed(saved):
        restore_luigi_config(previous)


def build(*tasks: luigi.Task) -> bool:
    """Run tasks through Luigi's own entry point, in-process, and say whether all succeeded."""
    return luigi.build(list(tasks), local_scheduler=True, workers=1, log_level="WARNING")
