"""pipeline/settings.py: packaged defaults under ./luigi.cfg, $LUIGI_CONFIG_PATH and --config; the wheel
holds everything `posemask masks` needs offline."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pipeline.settings import DEFAULTS
from tests.conftest import REPO

READ_SETTING = (
    "import sys; from pipeline.settings import load_settings; load_settings(sys.argv[1] or None); "
    "from pipeline.config import detect; print(detect().yolox_min_score, detect().method)"
)


def setting_seen(cwd: Path, env_config: Path | None = None, extra: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "LUIGI_CONFIG_PATH"}
    env["PYTHONPATH"] = str(REPO)
    if env_config is not None:
        env["LUIGI_CONFIG_PATH"] = str(env_config)
    result = subprocess.run(
        [sys.executable, "-c", READ_SETTING, str(extra or "")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def write_cfg(path: Path, score: float) -> Path:
    path.write_text(f"[detect]\nyolox_min_score = {score}\n")
    return path


def test_defaults_then_cwd_then_env_then_config_file(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert setting_seen(empty) == "0.3 yolox"  # the packaged defaults, from a folder with no luigi.cfg
    here = tmp_path / "here"
    here.mkdir()
    write_cfg(here / "luigi.cfg", 0.41)
    assert setting_seen(here) == "0.41 yolox"  # one value overridden, the rest still the defaults
    assert setting_seen(here, env_config=write_cfg(tmp_path / "env.cfg", 0.52)) == "0.52 yolox"
    extra = write_cfg(tmp_path / "extra.cfg", 0.63)
    assert setting_seen(here, env_config=tmp_path / "env.cfg", extra=extra) == "0.63 yolox"


def test_repository_luigi_cfg_only_overrides_the_work_folder():
    repo_cfg = configparser.ConfigParser()
    repo_cfg.read(REPO / "luigi.cfg")
    assert {s: dict(repo_cfg[s]) for s in repo_cfg.sections()} == {"work": {"root": "data/work"}}
    defaults = configparser.ConfigParser()
    defaults.read(DEFAULTS)
    assert not defaults.has_option("work", "root")  # so `posemask masks` can put its work under OUTPUT


@pytest.mark.slow
def test_wheel_holds_models_licences_and_default_settings(tmp_path):
    # build from a copy: setuptools writes build/ into the source folder
    source = tmp_path / "source"
    skip = shutil.ignore_patterns(".venv", ".git", "data", "build", "*.egg-info", "__pycache__", ".*_cache")
    shutil.copytree(REPO, source, ignore=skip)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("posemask-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "pipeline/defaults.cfg",
        "pipeline/local_scheduler.cfg",
        "models/weights/yolox_nano/yolox_nano_416x416.onnx",
        "models/weights/yolox_nano/LICENSE",
        "models/weights/yolox_nano/NOTICE",
        "models/weights/deeplabv3_mnv2/deeplab_v3_1_default_1.onnx",
        "models/weights/deeplabv3_mnv2/LICENSE",
        "models/weights/deeplabv3_mnv2/NOTICE",
        "models/weights/posemask_unet/model.pt",
        "models/weights/posemask_unet/crf.json",
        "models/weights/posemask_unet/MODEL_CARD.md",
    ):
        assert expected in names, f"{expected} missing from {wheel.name}"
    assert not any(n.startswith(("data/", "tests/")) for n in names)


def declared_defaults() -> dict[str, dict[str, object]]:
    """Every config section posemask declares (luigi.Config sections and task sections) -> {key: default}."""
    import luigi
    from luigi.task_register import Register

    import pipeline  # noqa: F401 - registers every task and section

    sections: dict[str, dict[str, object]] = {}
    for name, cls in Register._get_reg().items():
        if isinstance(cls, type) and issubclass(cls, luigi.Task) and cls.__module__.startswith("pipeline"):
            sections[name] = {key: param._default for key, param in cls.get_params()}
    return sections


def test_every_config_key_is_declared_and_overrides_a_different_default():
    """One default per setting: a key in defaults.cfg or luigi.cfg names a declared parameter and sets
    a value other than the code's default (a copy of the default would be a second default)."""
    declared = declared_defaults()
    for path in (DEFAULTS, REPO / "luigi.cfg"):
        parser = configparser.ConfigParser()
        parser.read(path)
        for section in parser.sections():
            if section in ("core", "scheduler", "worker", "retcode"):  # luigi's own sections
                continue
            assert section in declared, f"{path.name}: [{section}] is no posemask section or task"
            for key, text in parser[section].items():
                if (path.name, section, key) == ("luigi.cfg", "work", "root"):
                    continue  # set on purpose: a file that names the work folder keeps posemask masks on it
                assert key in declared[section], f"{path.name}: [{section}] {key} is not a declared parameter"
                param = next(p for k, p in _params(section) if k == key)
                assert param.normalize(param.parse(text)) != param.normalize(declared[section][key]), (
                    f"{path.name}: [{section}] {key} = {text} repeats the code's default"
                )


def _params(section: str):
    from luigi.task_register import Register

    return Register.get_task_cls(section).get_params()


def test_repository_configs_name_declared_settings_and_valid_datasets():
    """configs/*.cfg (the shipped recipe): every section is a posemask section, a task or a valid
    [dataset.NAME]; every key a declared parameter (a typo would silently fall back to a default)."""
    from pipeline.persons import DATASET_SECTION, configured_source

    declared = declared_defaults()
    configs = sorted((REPO / "configs").glob("*.cfg"))
    assert configs
    for path in configs:
        parser = configparser.ConfigParser()
        parser.read(path)
        for section in parser.sections():
            if section.startswith(DATASET_SECTION):
                import luigi.configuration

                luigi_parser = luigi.configuration.get_config()
                luigi_parser.read_dict({section: dict(parser[section])})
                try:
                    configured_source(section)
                finally:
                    luigi_parser.remove_section(section)
                continue
            assert section in declared, f"{path.name}: [{section}] is no posemask section or task"
            for key in parser[section]:
                assert key in declared[section], f"{path.name}: [{section}] {key} is not a declared parameter"


def test_torch_threads_come_from_resources_and_zero_leaves_torch_alone(luigi_config) -> None:
    import torch

    from pipeline.config import use_torch_threads

    before = torch.get_num_threads()
    try:
        luigi_config({"resources": {"torch_threads": 1}})
        use_torch_threads()
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        luigi_config({"resources": {"torch_threads": 0}})
        use_torch_threads()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_settings_out_of_range_or_of_the_wrong_type_are_named_with_their_range(luigi_config):
    from models.people.detect import METHODS
    from pipeline.generate import night_settings
    from pipeline.settings import check_settings

    assert check_settings(night_settings()) == []  # the packaged defaults
    luigi_config(
        {
            "detect": {"yolox_min_score": -1, "yolox_nms_iou": "abc", "method": "nope", "yolox_input_size": 640},
            "pose": {"segmentation_weight": 1.5, "check_owner": "maybe"},
            "GenerateMasks": {"min_keypoints": 40, "shard_size": 0},
            "resources": {"torch_threads": 2},
        }
    )
    problems = check_settings(night_settings())
    assert sorted(problems) == sorted(
        [
            "[detect] yolox_min_score = -1: must be in [0, 1]",
            "[detect] yolox_nms_iou = abc: must be a number",
            "[detect] method = nope: must be one of " + ", ".join(sorted(METHODS)),
            "[pose] segmentation_weight = 1.5: must be in [0, 1]",
            "[pose] check_owner = maybe: must be true or false",
            "[GenerateMasks] min_keypoints = 40: must be in [0, 17]",
            "[GenerateMasks] shard_size = 0: must be >= 1",
        ]
    )


def test_every_ranged_setting_has_its_default_inside_its_range():
    from pipeline.generate import night_settings

    for cls in night_settings():
        for name, param in cls.get_params():
            low, high = getattr(param, "allowed_range", (None, None))
            default = param._default
            assert low is None or default >= low, f"[{cls.get_task_family()}] {name}"
            assert high is None or default <= high, f"[{cls.get_task_family()}] {name}"


def test_a_bad_setting_is_exit_2_before_anything_is_written(tmp_path):
    config = tmp_path / "bad.cfg"
    config.write_text("[detect]\nyolox_min_score = -1\n")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "LUIGI_CONFIG_PATH"}
    posemask = Path(sys.executable).parent / "posemask"
    photos = REPO / "data" / "sample" / "photos"
    result = subprocess.run(
        [str(posemask), "masks", str(photos), str(out), "--config", str(config)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "[detect] yolox_min_score = -1: must be in [0, 1]" in result.stderr
    assert not out.exists()
    # the luigi command: the same check fails GenerateMasks before it plans or writes
    luigi_bin = Path(sys.executable).parent / "luigi"
    result = subprocess.run(
        [str(luigi_bin), "--module", "pipeline", "GenerateMasks", "--input-dir", str(photos), "--output-dir", str(out)],
        cwd=tmp_path,
        env={**env, "LUIGI_CONFIG_PATH": str(config)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "yolox_min_score = -1" in result.stdout + result.stderr
    assert not out.exists()


def test_settings_overridden_for_a_block_are_gone_after_it(tmp_path, luigi_config):
    """bench/nightly_quality.py builds its "before" variant inside such a block: a value only the
    block's file sets must not leak into what is built after it (re-reading the files would keep it)."""
    from pipeline.config import detect
    from pipeline.settings import settings_overridden_by

    extra = tmp_path / "before.cfg"
    extra.write_text("[detect]\nbox_mask = selfie\nyolox_min_score = 0.6\n")
    luigi_config({"detect": {"yolox_min_score": 0.4}})
    with settings_overridden_by(extra):
        assert detect().box_mask == "selfie" and detect().yolox_min_score == 0.6
    assert detect().box_mask == "network" and detect().yolox_min_score == 0.4
