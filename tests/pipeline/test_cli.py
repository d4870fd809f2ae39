"""The posemask command: in-process main(argv) for behaviour and exit codes, once as the installed script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from luigi.task_register import Register

from models.network.checkpoints import save_model
from models.network.unet import ModelConfig, PoseUNet
from models.people.ownership import REASONS
from models.utils.assets import SHIPPED_MODEL, SHIPPED_NAME
from posemask.cli import main
from posemask.exits import EXIT_FAILED, EXIT_OK, EXIT_SKIPPED, EXIT_USAGE
from tests.conftest import SAMPLE

VAL = SAMPLE / "coco" / "val2017"
KEYPOINTS = SAMPLE / "coco" / "annotations" / "person_keypoints_val2017.json"


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig(base_channels=4, depth=2)
    save_model(tmp_path / "tiny.pt", PoseUNet(cfg), cfg, {})
    return tmp_path / "tiny.pt"


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("000000000785.jpg", "000000040083.jpg"):
        shutil.copy(VAL / name, folder / name)
    return folder


def run(argv: list[str]) -> int:
    Register.clear_instance_cache()
    return main(argv)


def test_masks_exit_0_then_1_when_a_file_is_skipped(tmp_path, luigi_config, tiny_model, photos, capsys):
    out = tmp_path / "masks"
    argv = ["masks", str(photos), str(out), "--model", str(tiny_model), "--keypoints", str(KEYPOINTS), "--quiet"]
    code = run(argv)
    printed = capsys.readouterr().out
    assert code == EXIT_SKIPPED  # the COCO file names 21 images this folder lacks: reported, counted
    assert "keypoints_for_missing_image 21" in printed and str(out) in printed
    subset = json.loads(KEYPOINTS.read_text())
    subset["images"] = [im for im in subset["images"] if (photos / im["file_name"]).exists()]
    kept = {im["id"] for im in subset["images"]}
    subset["annotations"] = [a for a in subset["annotations"] if a["image_id"] in kept]
    (tmp_path / "kp.json").write_text(json.dumps(subset))
    argv[-2] = str(tmp_path / "kp.json")
    assert run(argv) == EXIT_OK
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done"] == 2 and summary["problems_total"] == 0
    assert (out / "000000000785.jpg.person0.png").is_file()
    (photos / "broken.jpg").write_bytes(b"")
    assert run(argv) == EXIT_SKIPPED
    assert "empty_file 1" in capsys.readouterr().out


def test_usage_errors_exit_2(tmp_path, tiny_model, photos, capsys):
    assert run(["masks", str(tmp_path / "absent"), str(tmp_path / "out")]) == EXIT_USAGE
    assert run(["masks", str(photos), str(tmp_path / "out"), "--model", str(tmp_path / "none.pt")]) == EXIT_USAGE
    assert run(["masks", str(photos), str(tmp_path / "out"), "--keypoints", str(tmp_path / "no.json")]) == EXIT_USAGE
    assert run(["masks", str(photos)]) == EXIT_USAGE
    assert run(["frobnicate"]) == EXIT_USAGE
    assert "is not a folder" in capsys.readouterr().err


def test_pipeline_failure_exits_3(tmp_path, luigi_config, photos, capsys):
    bad_model = tmp_path / "bad.pt"
    bad_model.write_bytes(b"not a torch file")  # exists (usage ok) but cannot be loaded: a task fails
    code = run(["masks", str(photos), str(tmp_path / "out"), "--model", str(bad_model), "--quiet"])
    assert code == EXIT_FAILED
    assert "failed" in capsys.readouterr().err


def test_help_is_a_manual_from_the_installed_script():
    script = Path(sys.executable).parent / "posemask"
    assert script.is_file(), "reinstall: pip install -e . --no-deps (creates the posemask script)"
    result = subprocess.run([str(script), "masks", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for expected in ("examples:", "exit codes:", "--scheduler-url", "--keypoints", "labels.png", "luigid"):
        assert expected in result.stdout
    assert subprocess.run([str(script)], capture_output=True, timeout=60).returncode == EXIT_USAGE


def network_isolated() -> list[str]:
    """A command prefix that runs a program without any network (a new, empty network namespace),
    or [] where this machine does not allow one (then the run still must not need the network)."""
    try:
        ok = subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return ["unshare", "--net"] if ok else []


def test_installed_script_works_from_an_empty_folder_offline(tmp_path, photos):
    """As a new user: installed script, cwd an empty folder, no LUIGI_CONFIG_PATH, no keypoints, no network."""
    script = Path(sys.executable).parent / "posemask"
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    out = tmp_path / "masks"
    env = {k: v for k, v in os.environ.items() if k not in ("LUIGI_CONFIG_PATH", "PYTHONPATH")}
    result = subprocess.run(
        [*network_isolated(), str(script), "masks", str(photos), str(out), "--quiet"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    assert list(cwd.iterdir()) == []  # nothing read from or written to the current folder
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == SHIPPED_NAME and summary["done"] == 2 and summary["problems_total"] == 0
    assert (out / "000000000785.jpg.person0.png").is_file() and (out / "000000040083.jpg.labels.png").is_file()
    # every detected person is counted by why they have their pose (or none), in rows and summary
    rows = [json.loads(line) for m in (out / "shards").glob("*/manifest.jsonl") for line in m.open()]
    assert sum(sum(r.get("pose_reasons", {}).values()) for r in rows) == summary["people"] > 0
    assert sum(summary["pose_reasons"].values()) == summary["people"]
    assert set(summary["pose_reasons"]) <= set(REASONS)
    assert (out / ".posemask").is_dir() and not (out / ".posemask" / "work").exists()  # nothing to train
    assert "masks shard" not in result.stderr and "image/s" not in result.stderr  # --quiet: no progress bar
    version = subprocess.run([str(script), "--version"], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("posemask 0.")


def test_a_named_model_that_is_not_trained_is_a_usage_error(tmp_path, luigi_config, photos, capsys):
    code = run(["masks", str(photos), str(tmp_path / "out"), "--model", "unet-coco", "--quiet"])
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "not trained" in err and "luigi --module pipeline TrainModel" in err
    assert not (tmp_path / "work").exists() and not (tmp_path / "out").exists()  # no training, no download


def test_a_peer_method_writes_one_semantic_mask(tmp_path, luigi_config, photos):
    out = tmp_path / "selfie"
    assert run(["masks", str(photos), str(out), "--method", "selfie", "--quiet"]) == EXIT_OK
    labels = cv2.imread(str(out / "000000000785.jpg.labels.png"), cv2.IMREAD_UNCHANGED)
    assert labels is not None and set(np.unique(labels)) == {0, 1}
    assert not list(out.glob("*.person*.png"))
    records = [r for f in (out / "shards").glob("*/results.json") for r in json.loads(f.read_text())]
    assert {r["mask_source"] for r in records} == {"selfie"} and all(r["person"] is None for r in records)


@pytest.mark.slow
def test_a_second_night_over_200_processed_photos_does_nothing(tmp_path):
    """200 real (downscaled, each slightly different) photos through the installed script, twice."""
    script = Path(sys.executable).parent / "posemask"
    photos = tmp_path / "photos"
    photos.mkdir()
    sources = [cv2.imread(str(VAL / name)) for name in ("000000000785.jpg", "000000040083.jpg", "000000397133.jpg")]
    for k in range(200):
        image = cv2.resize(sources[k % 3], (160, 120), interpolation=cv2.INTER_AREA)
        image[0, 0] = (k, k // 2, 255 - k)  # a different file, so a different content hash, for every photo
        cv2.imwrite(str(photos / f"night_{k:03d}.jpg"), image)
    out = tmp_path / "masks"
    env = {k: v for k, v in os.environ.items() if k != "LUIGI_CONFIG_PATH"}
    command = [str(script), "masks", str(photos), str(out), "--quiet"]
    first = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == EXIT_OK, first.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 200 and summary["processed"] == 200
    files = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == EXIT_OK, second.stderr
    assert json.loads((out / "summary.json").read_text()) == summary  # no shard ran, the summary stands
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == files  # nothing rewritten


def test_the_shipped_model_has_its_card_and_crf_and_loads_safely():
    from models.network.checkpoints import load_model

    card = (SHIPPED_MODEL.parent / "MODEL_CARD.md").read_text()
    assert "training data" in card.lower() and "reproduce" in card and "make shipped-model" in card
    assert json.loads((SHIPPED_MODEL.parent / "crf.json").read_text())["params"]
    net, cfg, meta = load_model(SHIPPED_MODEL)  # torch.load(weights_only=True) inside
    assert cfg.base_channels == 16 and meta["task"] == "TrainModel" and SHIPPED_MODEL.stat().st_size < 20e6


def test_output_that_is_the_input_is_a_usage_error(tmp_path, photos, capsys):
    assert run(["masks", str(photos), str(photos)]) == EXIT_USAGE
    assert "OUTPUT must not be INPUT" in capsys.readouterr().err


def test_output_that_is_a_file_is_a_usage_error(tmp_path, photos, capsys):
    out = tmp_path / "masks"
    out.write_text("not a folder")
    assert run(["masks", str(photos), str(out)]) == EXIT_USAGE
    assert "is a file, not a folder" in capsys.readouterr().err
    assert out.read_text() == "not a folder"


def test_output_on_a_read_only_mount_is_exit_3_naming_it(tmp_path, photos):
    """A read-only OUTPUT (here a tmpfs remounted read-only in a private mount namespace) is a
    failure that names the folder, not a traceback and not exit 1 ("some photos skipped")."""
    mount = tmp_path / "ro"
    mount.mkdir()
    script = Path(sys.executable).parent / "posemask"
    shell = f"mount -t tmpfs none {mount} && mount -o remount,ro {mount} && exec {script} masks {photos} {mount}/out"
    try:
        result = subprocess.run(["unshare", "--mount", "sh", "-c", shell], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as err:
        pytest.skip(f"no private mount namespace here: {err}")
    if "mount:" in result.stderr or "unshare:" in result.stderr:
        pytest.skip(f"no private mount namespace here: {result.stderr.strip()}")
    assert result.returncode == EXIT_FAILED, result.stderr
    assert f"cannot write to OUTPUT {mount}/out" in result.stderr and "Traceback" not in result.stderr


def test_a_failing_luigi_task_exits_non_zero(tmp_path):
    """The packaged [retcode] section: `luigi --module pipeline ...` reports a failure to cron."""
    luigi_bin = Path(sys.executable).parent / "luigi"
    env = {k: v for k, v in os.environ.items() if k != "LUIGI_CONFIG_PATH"}
    command = [
        str(luigi_bin),
        "--module",
        "pipeline",
        "GenerateMasks",
        "--input-dir",
        str(tmp_path / "absent"),
        "--output-dir",
        str(tmp_path / "out"),
    ]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0, result.stdout + result.stderr


def test_a_second_photo_folder_into_the_same_output_is_refused(tmp_path, luigi_config, tiny_model, photos, capsys):
    """An output folder belongs to one photo folder: a second one would prune the first's manifests."""
    from pipeline.lib.night import OutputInUseError, claim_output

    out = tmp_path / "masks"
    assert run(["masks", str(photos), str(out), "--model", str(tiny_model), "--quiet"]) == EXIT_OK
    manifests = sorted(out.glob("shards/*/manifest.jsonl"))
    assert manifests
    other = tmp_path / "other"
    shutil.copytree(photos, other)
    assert run(["masks", str(other), str(out), "--model", str(tiny_model), "--quiet"]) == EXIT_USAGE
    assert f"holds the masks of {photos.resolve()}" in capsys.readouterr().err
    assert sorted(out.glob("shards/*/manifest.jsonl")) == manifests
    with pytest.raises(OutputInUseError, match="give each photo folder its own output folder"):
        claim_output(out, other)  # what GenerateMasks itself does, for `luigi --module pipeline GenerateMasks`
    claim_output(out, photos)  # the owner may come back
    assert run(["masks", str(photos), str(out), "--model", str(tiny_model), "--quiet"]) == EXIT_OK


def test_a_second_local_night_on_the_same_output_waits_for_nobody_and_says_so(tmp_path, tiny_model, photos, capsys):
    """Two local-scheduler nights on one OUTPUT would compute the same shards and print two summaries."""
    from pipeline.lib.files import exclusive_lock
    from pipeline.lib.night import NIGHT_LOCK, STATE_DIR
    from posemask.exits import EXIT_BUSY

    out = tmp_path / "masks"
    with exclusive_lock(out / STATE_DIR / NIGHT_LOCK):  # a night in progress
        assert run(["masks", str(photos), str(out), "--model", str(tiny_model), "--quiet"]) == EXIT_BUSY
    assert "another posemask masks run is writing" in capsys.readouterr().err
    assert not (out / "summary.json").exists()


def test_help_and_usage_errors_import_no_pipeline() -> None:
    """`posemask --help` must start in well under a second: nothing heavy may load before a run."""
    probe = (
        "import sys, contextlib, io\n"
        "from posemask.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "    codes = [main(['--help']), main(['masks', '--help']), main(['masks', 'only-one-argument'])]\n"
        "heavy = sorted({'numpy', 'torch', 'luigi', 'cv2', 'pipeline', 'matplotlib'} & set(sys.modules))\n"
        "print(codes, heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[0, 0, 2] []"


def test_the_front_end_knows_every_method() -> None:
    from pipeline.estimators import METHODS
    from posemask.cli import METHOD_NAMES

    assert METHOD_NAMES == METHODS
