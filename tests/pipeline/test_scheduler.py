"""A night under a central luigid really is shared and an unreachable scheduler is a quick exit 3
(pipeline/scheduler.py, pipeline/cli.py); the kills and signals of a night (a dying
scheduler, SIGTERM, SIGINT, SIGKILL) are in the fault harness, tests/pipeline/test_faults.py,
which uses the helpers here. Every night here is the installed console script, run as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import scheduler
from tests.conftest import REPO, SAMPLE

VAL = SAMPLE / "coco" / "val2017"
KEYPOINTS = SAMPLE / "coco" / "annotations" / "person_keypoints_val2017.json"
BIN = Path(sys.executable).parent
PHOTOS = ["000000000785.jpg", "000000040083.jpg", "000000397133.jpg", "000000165518.jpg"]


def many_photos(dest: Path, copies: int) -> tuple[Path, Path]:
    """The 4 val photos `copies` times under new names, and a keypoints file naming every copy."""
    dest.mkdir(parents=True)
    data = json.loads(KEYPOINTS.read_text())
    by_name = {im["file_name"]: im for im in data["images"]}
    images, annotations = [], []
    for c in range(copies):
        for name in PHOTOS:
            shutil.copy(VAL / name, dest / f"c{c}_{name}")
            image = by_name[name]
            new_id = (c + 1) * 10**9 + image["id"]
            images.append({**image, "id": new_id, "file_name": f"c{c}_{name}"})
            annotations += [
                {**a, "id": (c + 1) * 10**9 + a["id"], "image_id": new_id}
                for a in data["annotations"]
                if a["image_id"] == image["id"]
            ]
    keypoints = dest.parent / "keypoints.json"
    keypoints.write_text(json.dumps({**data, "images": images, "annotations": annotations}))
    return dest, keypoints


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LUIGI_CONFIG_PATH"}
    return {**env, "PYTHONPATH": str(REPO)}


def start_luigid(tmp_path: Path, port: int) -> subprocess.Popen:
    (tmp_path / "luigid").mkdir(exist_ok=True)
    command = [str(BIN / "luigid"), "--port", str(port), "--address", "127.0.0.1"]
    command += ["--logdir", str(tmp_path / "luigid"), "--state-path", str(tmp_path / "luigid" / "state.pickle")]
    luigid = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return luigid
        except OSError:
            assert time.time() < deadline and luigid.poll() is None, "luigid did not start"
            time.sleep(0.2)


def masks_command(photos: Path, out: Path, model: Path, keypoints: Path, *extra: str) -> list[str]:
    command = [str(BIN / "posemask"), "masks", str(photos), str(out), "--model", str(model)]
    return command + ["--keypoints", str(keypoints), "--shard-size", "1", "--quiet", *extra]


def wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def mask_files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*.png") if ".posemask" not in p.parts}


def done_shards(out: Path) -> int:
    return len(list((out / "shards").glob("*/manifest.jsonl"))) if (out / "shards").is_dir() else 0


# ----------------------------------------------------------------------------- which scheduler


def test_a_central_scheduler_is_named_by_the_command_line_or_a_config(luigi_config):
    assert scheduler.names_a_scheduler(["luigi", "--module", "pipeline", "X", "--scheduler-host", "h"])
    assert scheduler.names_a_scheduler(["X", "--scheduler-url=http://h:1"])
    assert not scheduler.names_a_scheduler(["luigi", "--module", "pipeline", "X", "--local-scheduler"])
    assert scheduler.scheduler_params("") == {"local_scheduler": True}  # the packaged default
    assert scheduler.scheduler_params("http://h:9") == {"local_scheduler": False, "scheduler_url": "http://h:9"}
    assert scheduler.scheduler_address("http://h:9/") == ("h", 9)
    luigi_config({"core": {"local_scheduler": "false", "default-scheduler-host": "sched", "default-scheduler-port": 7}})
    assert scheduler.scheduler_params("") == {"local_scheduler": False}
    assert scheduler.scheduler_address("") == ("sched", 7)


def test_the_luigi_command_loads_the_local_default_only_when_no_scheduler_is_named():
    code = "import pipeline, luigi.configuration as c; print(c.get_config().get('core', 'local_scheduler', 'unset'))"
    env = environment(Path("."))
    plain = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert plain.stdout.strip() == "true", plain.stderr
    named = subprocess.run(
        [sys.executable, "-c", code, "--scheduler-host", "h"], env=env, capture_output=True, text=True, timeout=60
    )
    assert named.stdout.strip() == "unset", named.stderr


def test_an_unreachable_scheduler_is_exit_3_within_seconds(tmp_path, tiny_model):
    photos, keypoints = many_photos(tmp_path / "photos", 1)
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    command = masks_command(photos, tmp_path / "out", tiny_model, keypoints, "--scheduler-url", url)
    result = subprocess.run(command, env=environment(tmp_path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stdout + result.stderr
    assert time.monotonic() - started < 10
    assert "does not answer" in result.stderr and "Traceback" not in result.stderr
    assert not mask_files(tmp_path / "out")


def test_luigis_own_scheduler_options_are_not_ignored(tmp_path, tiny_model):
    """`luigi --module pipeline GenerateMasks --scheduler-host/--scheduler-port` uses that
    scheduler: with nothing listening it fails, and computes nothing locally."""
    photos, keypoints = many_photos(tmp_path / "photos", 1)
    command = [str(BIN / "luigi"), "--module", "pipeline", "GenerateMasks", "--input-dir", str(photos)]
    command += ["--output-dir", str(tmp_path / "out"), "--model", str(tiny_model), "--keypoints", str(keypoints)]
    command += ["--scheduler-host", "127.0.0.1", "--scheduler-port", str(free_port())]
    result = subprocess.run(command, cwd=tmp_path, env=environment(tmp_path), capture_output=True, timeout=120)
    assert result.returncode != 0
    assert not mask_files(tmp_path / "out")


# ----------------------------------------------------------------------------- a shared night


@pytest.mark.slow
def test_two_processes_share_one_night_through_luigid(tmp_path, tiny_model):
    photos, keypoints = many_photos(tmp_path / "photos", 4)  # 16 photos, one shard each
    env = environment(tmp_path)
    single = subprocess.run(
        masks_command(photos, tmp_path / "single", tiny_model, keypoints), env=env, capture_output=True, timeout=300
    )
    assert single.returncode == 0, single.stderr
    port = free_port()
    luigid = start_luigid(tmp_path, port)
    try:
        command = masks_command(photos, tmp_path / "shared", tiny_model, keypoints)
        command += ["--scheduler-url", f"http://127.0.0.1:{port}"]
        workers = [
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outputs = [w.communicate(timeout=300) for w in workers]
    finally:
        luigid.terminate()
        luigid.wait(timeout=10)
    assert all(w.returncode == 0 for w in workers), outputs
    computed = []
    for stdout, _ in outputs:
        line = next(line for line in stdout.splitlines() if line.startswith("this worker computed"))
        computed.append(int(line.split()[3]))
    assert sum(computed) == 16, outputs  # no shard computed twice, none left out
    assert min(computed) > 0, f"one process did all the work: {computed}"
    assert mask_files(tmp_path / "shared") == mask_files(tmp_path / "single")
    rows = [json.loads(line) for m in (tmp_path / "shared" / "shards").glob("*/manifest.jsonl") for line in m.open()]
    assert sorted(r["path"] for r in rows) == sorted(p.name for p in photos.glob("*.jpg"))


def test_the_watchdog_interrupts_the_night_when_the_scheduler_stops_answering():
    """Even in the middle of a long shard (no RPC for minutes), the night learns within seconds."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    address = listener.getsockname()
    with scheduler.SchedulerWatchdog(address, grace=0.5, interval=0.1) as watchdog:
        time.sleep(0.5)
        assert not watchdog.lost  # answering: nothing happens
        listener.close()
        with pytest.raises(KeyboardInterrupt):
            time.sleep(5)  # a long shard; interrupted after ~grace
    assert watchdog.lost
