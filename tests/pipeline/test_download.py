"""DownloadCOCO / DownloadVOC through luigi.build against a local HTTP server on 127.0.0.1 (mirror setting)."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import shutil
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import luigi
import pytest

from pipeline.download import COCO_MD5S, COCO_URLS, VOC_MD5S, VOC_URLS, DownloadCOCO, DownloadConfig, DownloadVOC
from pipeline.lib.dataset_layouts import check_coco_layout, check_voc_layout
from pipeline.lib.fetch import EXISTING_COPY, MANIFEST_NAME
from pipeline.lib.transfer import archive_name
from tests.pipeline.archives import zip_bytes as _zip_bytes

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"


def _tiny_coco() -> dict[str, bytes]:
    """Official archive names -> tiny zips with the official layout, from a few sample files."""
    coco = SAMPLE / "coco"
    archives = {
        "annotations_trainval2017.zip": _zip_bytes(
            {
                f"annotations/person_keypoints_{split}2017.json": (
                    coco / "annotations" / f"person_keypoints_{split}2017.json"
                ).read_bytes()
                for split in ("train", "val")
            }
        )
    }
    for split in ("train", "val"):
        images = sorted((coco / f"{split}2017").glob("*.jpg"))[:2]
        archives[f"{split}2017.zip"] = _zip_bytes({f"{split}2017/{p.name}": p.read_bytes() for p in images})
    return archives


def _tiny_voc() -> dict[str, bytes]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        tf.add(SAMPLE / "voc" / "VOCdevkit", arcname="VOCdevkit")
    return {"VOCtrainval_11-May-2012.tar": buffer.getvalue()}


ARCHIVES = {**_tiny_coco(), **_tiny_voc()}
URL_PATHS = {archive_name(url): "/" + url.split("/", 3)[3] for url in (*COCO_URLS, *VOC_URLS)}


class Server:
    """Serves ARCHIVES at the official URL paths; records requested paths."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        files = {URL_PATHS[name]: data for name, data in ARCHIVES.items()}
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                hits.append(self.path)
                data = files.get(self.path)
                self.send_response(200 if data is not None else 404)
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    server = Server()
    yield server
    server.close()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def config(server: Server, tmp_path: Path) -> Iterator[dict[str, str]]:
    """[DownloadConfig] pointing at the local server, with the tiny archives' sizes and MD5s."""
    values = {
        "mirror": server.base,
        "raw_dir": str(tmp_path / "raw"),
        "archive_dir": "",
        "retries": "1",
        "backoff_s": "0.001",
        "max_backoff_s": "0.01",
        "timeout_s": "5",
        "progress": "false",
        "keep_archives": "true",
        "coco_sizes": json.dumps({name: len(ARCHIVES[name]) for name in COCO_MD5S}),
        "coco_md5s": json.dumps({name: _md5(ARCHIVES[name]) for name in COCO_MD5S}),
        "voc_sizes": json.dumps({name: len(ARCHIVES[name]) for name in VOC_MD5S}),
        "voc_md5s": json.dumps({name: _md5(ARCHIVES[name]) for name in VOC_MD5S}),
    }
    settings = {("DownloadConfig", key): value for key, value in values.items()}
    settings[("work", "root")] = str(tmp_path / "work")  # the task markers
    parser = luigi.configuration.get_config()
    saved = {}
    for (section, key), value in settings.items():
        if not parser.has_section(section):
            parser.add_section(section)
        saved[(section, key)] = parser.get(section, key) if parser.has_option(section, key) else None
        parser.set(section, key, value)
    yield values
    for (section, key), value in saved.items():
        if value is None:
            parser.remove_option(section, key)
        else:
            parser.set(section, key, value)


def _build(*tasks: luigi.Task) -> bool:
    result = luigi.build(list(tasks), local_scheduler=True, workers=1, detailed_summary=True, log_level="WARNING")
    return result.status in (luigi.LuigiStatusCode.SUCCESS, luigi.LuigiStatusCode.SUCCESS_WITH_RETRY)


def test_download_coco_and_voc_through_the_mirror(server: Server, config: dict[str, str], tmp_path: Path) -> None:
    coco, voc = DownloadCOCO(root=str(tmp_path / "coco")), DownloadVOC(root=str(tmp_path / "voc"))
    assert _build(coco, voc)
    assert sorted(server.hits) == sorted(URL_PATHS.values())
    assert check_coco_layout(tmp_path / "coco") == [] and check_voc_layout(tmp_path / "voc") == []
    manifest = json.loads(Path(coco.output().path).read_text())
    assert manifest["source"] == "downloaded" and manifest["root"] == str((tmp_path / "coco").resolve())
    assert Path(coco.output().path).is_relative_to(tmp_path / "work" / "DownloadCOCO")
    assert json.loads((tmp_path / "coco" / MANIFEST_NAME).read_text())["files"] == manifest["files"]
    assert {f["name"]: (f["size"], f["md5"]) for f in manifest["files"]} == {
        name: (len(ARCHIVES[name]), _md5(ARCHIVES[name])) for name in COCO_MD5S
    }
    assert all(url.startswith(server.base) for url in manifest["urls"])
    assert sorted(p.name for p in (tmp_path / "raw" / "archives").iterdir()) == sorted(ARCHIVES)
    assert (tmp_path / "voc" / "VOCdevkit" / "VOC2012" / "JPEGImages" / "2007_000063.jpg").read_bytes() == (
        SAMPLE / "voc" / "VOCdevkit" / "VOC2012" / "JPEGImages" / "2007_000063.jpg"
    ).read_bytes()
    # Done means done: a second build is a no-op.
    assert _build(DownloadCOCO(root=str(tmp_path / "coco")), DownloadVOC(root=str(tmp_path / "voc")))
    assert len(server.hits) == len(URL_PATHS)


def test_existing_copy_is_used_without_touching_the_network(
    server: Server, config: dict[str, str], tmp_path: Path
) -> None:
    root = _existing_coco(tmp_path / "my_coco")
    before = _tree(root)
    task = DownloadCOCO(root=str(root))
    assert _build(task)
    assert server.hits == []
    # Nothing is written into the copy (it may be read-only or shared): the marker is in the work folder.
    assert _tree(root) == before
    manifest = json.loads(Path(task.output().path).read_text())
    assert manifest["source"] == EXISTING_COPY and manifest["files"] == []
    assert manifest["root"] == str(root.resolve()) and manifest["layout"] == {"splits": ["train", "val"]}
    assert Path(task.output().path).is_relative_to(tmp_path / "work" / "DownloadCOCO")
    assert not (tmp_path / "raw").exists()
    assert task.complete()


def _tree(root: Path) -> dict[str, int]:
    """Every path under ``root`` with its modification time (ns)."""
    return {str(path.relative_to(root)): path.stat().st_mtime_ns for path in root.rglob("*")}


def _existing_coco(root: Path) -> Path:
    shutil.copytree(SAMPLE / "coco" / "annotations", root / "annotations")
    for split in ("train", "val"):
        (root / f"{split}2017").mkdir()
        image = sorted((SAMPLE / "coco" / f"{split}2017").glob("*.jpg"))[0]
        shutil.copy(image, root / f"{split}2017" / image.name)
    return root


def test_completion_rechecks_the_layout_and_the_splits(server: Server, config: dict[str, str], tmp_path: Path) -> None:
    root = _existing_coco(tmp_path / "my_coco")
    assert _build(DownloadCOCO(root=str(root)))
    assert DownloadCOCO(root=str(root)).complete()
    # another split list is another marker: not complete until checked
    parser = luigi.configuration.get_config()
    parser.set("DownloadConfig", "coco_splits", '["val"]')
    try:
        val_only = DownloadCOCO(root=str(root))
        assert val_only.output().path != DownloadCOCO(root=str(tmp_path / "other")).output().path
        assert not val_only.complete()
        assert _build(val_only) and val_only.complete()
    finally:
        parser.remove_option("DownloadConfig", "coco_splits")
    # a copy that lost an image folder is no longer complete, although its marker is still there
    task = DownloadCOCO(root=str(root))
    shutil.rmtree(root / "val2017")
    assert Path(task.output().path).exists() and not task.complete()
    assert server.hits == []


def test_wrong_archive_fails_the_task_and_is_kept_aside(server: Server, config: dict[str, str], tmp_path: Path) -> None:
    parser = luigi.configuration.get_config()
    parser.set("DownloadConfig", "voc_md5s", json.dumps(VOC_MD5S))  # the official MD5: the tiny tar fails it
    task = DownloadVOC(root=str(tmp_path / "voc"))
    assert not _build(task)
    assert not Path(task.output().path).exists()
    assert not (tmp_path / "voc").exists()
    archives = tmp_path / "raw" / "archives"
    assert sorted(p.name for p in archives.iterdir()) == ["VOCtrainval_11-May-2012.tar.bad"]


def test_default_roots_follow_raw_dir(config: dict[str, str], tmp_path: Path) -> None:
    assert DownloadCOCO().dataset_root() == tmp_path / "raw" / "coco"
    assert DownloadVOC().dataset_root() == tmp_path / "raw" / "voc"
    # the marker depends on the resolved folder, not on how it was spelled
    assert DownloadCOCO().output().path == DownloadCOCO(root=str(tmp_path / "raw" / "coco")).output().path
    assert Path(DownloadVOC().output().path).parent.parent == tmp_path / "work" / "DownloadVOC"
    assert DownloadConfig().archive_folder() == tmp_path / "raw" / "archives"


def test_run_reports_progress_to_the_scheduler(server: Server, config: dict[str, str], tmp_path: Path) -> None:
    task = DownloadCOCO(root=str(tmp_path / "coco2"))
    percents: list[int] = []
    messages: list[str] = []
    task.set_progress_percentage = percents.append
    task.set_status_message = messages.append
    task.run()
    assert percents[0] == 0 and percents[-1] == 100 and percents == sorted(percents)
    assert any("downloading train2017.zip (1/3)" in m for m in messages)
    assert any("extracting annotations_trainval2017.zip (3/3)" in m for m in messages)


def test_official_archive_table() -> None:
    """The defaults are the published archives (a typo here would cost an 18 GB download)."""
    spec = {archive_name(url): url for url in (*COCO_URLS, *VOC_URLS)}
    assert spec["train2017.zip"] == "http://images.cocodataset.org/zips/train2017.zip"
    assert COCO_MD5S == {
        "train2017.zip": "cced6f7f71b7629ddf16f17bbcfab6b2",
        "val2017.zip": "442b8da7639aecaf257c1dceb8ba8c80",
        "annotations_trainval2017.zip": "f4bbac642086de4f52a3fdda2de5fa2c",
    }
    assert VOC_MD5S == {"VOCtrainval_11-May-2012.tar": "6cd6e144f989b92b3379bac3b3de84fd"}


def test_command_line_with_an_existing_copy(server: Server, config: dict[str, str], tmp_path: Path) -> None:
    """``luigi DownloadVOC --root PATH`` parses next to every other registered task and config flag."""
    shutil.copytree(SAMPLE / "voc", tmp_path / "voc")
    before = _tree(tmp_path / "voc")
    ok = luigi.run(
        [
            "--module",
            "pipeline.download",
            "DownloadVOC",
            "--root",
            str(tmp_path / "voc"),
            "--local-scheduler",
            "--no-lock",
            "--log-level",
            "WARNING",
        ]
    )
    assert ok is True
    task = DownloadVOC(root=str(tmp_path / "voc"))
    assert json.loads(Path(task.output().path).read_text())["source"] == EXISTING_COPY
    assert _tree(tmp_path / "voc") == before
    assert server.hits == []
