"""pipeline.lib.fetch against a local HTTP server on 127.0.0.1 (no other address is ever contacted)."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import re
import socket
import stat
import tarfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest

from pipeline.lib import archives, fetch, transfer
from pipeline.lib.archives import ArchiveError, UnsafeArchiveError, safe_extract
from pipeline.lib.checksums import ChecksumMismatchError, DownloadError
from pipeline.lib.dataset_layouts import check_coco_layout, check_voc_layout
from pipeline.lib.fetch import EXISTING_COPY, MANIFEST_NAME, ArchiveSpec, prepare_dataset, write_manifest
from pipeline.lib.transfer import DownloadOptions, apply_mirror, archive_name, download
from tests.pipeline.archives import zip_bytes as _zip_bytes

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
FAST = {
    "retries": 3,
    "backoff_s": 0.001,
    "max_backoff_s": 0.01,
    "timeout_s": 5.0,
    "chunk_bytes": 4096,
    "progress": False,
}


# --------------------------------------------------------------------------------------------
# A scriptable HTTP server on 127.0.0.1
# --------------------------------------------------------------------------------------------


@dataclass
class Hit:
    path: str
    range: str | None
    status: int


@dataclass
class FakeServer:
    """Serves ``files`` by URL path; records every request; misbehaves on demand."""

    files: dict[str, bytes] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    drop_after: dict[str, list[int]] = field(default_factory=dict)  # per request: send N body bytes, hang up
    fail: dict[str, list[int]] = field(default_factory=dict)  # statuses to answer first, one per request
    stall_s: dict[str, float] = field(default_factory=dict)  # one-shot: wait before answering
    ignore_range: bool = False
    base: str = ""

    def url(self, path: str) -> str:
        return self.base + path


def _make_handler(state: FakeServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

        def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            state.hits.append(Hit(self.path, self.headers.get("Range"), status))
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            cuts = state.drop_after.get(self.path)
            cut = cuts.pop(0) if cuts else None
            if cut is not None:
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            stall = state.stall_s.pop(self.path, None)
            if stall is not None:
                time.sleep(stall)
            if self.path not in state.files:
                self._answer(404, b"not found", {})
                return
            if state.fail.get(self.path):
                self._answer(state.fail[self.path].pop(0), b"try later", {})
                return
            data = state.files[self.path]
            match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            if match and not state.ignore_range:
                start = int(match.group(1))
                if start >= len(data):
                    self._answer(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                    return
                self._answer(206, data[start:], {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
                return
            self._answer(200, data, {})

    return Handler


@pytest.fixture
def server() -> FakeServer:
    state = FakeServer()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    httpd.daemon_threads = True
    httpd.handle_error = lambda request, address: None  # type: ignore[method-assign]
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def _payload(size: int = 100_003) -> bytes:
    """Deterministic, non-repeating bytes (a resume at the wrong offset cannot go unnoticed)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(counter.to_bytes(8, "little")).digest()
        counter += 1
    return bytes(out[:size])


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------------------------
# download()
# --------------------------------------------------------------------------------------------


def test_fresh_download_verified_and_atomic(server: FakeServer, tmp_path: Path) -> None:
    data = _payload()
    server.files["/zips/a.zip"] = data
    dest = tmp_path / "dl" / "a.zip"
    sha = hashlib.sha256(data).hexdigest()
    got = download(server.url("/zips/a.zip"), dest, len(data), _md5(data), sha256=sha, **{**FAST, "progress": True})
    assert got == dest and dest.read_bytes() == data
    assert _leftovers(dest.parent) == ["a.zip"]
    assert [(h.range, h.status) for h in server.hits] == [(None, 200)]


def test_resume_after_connection_dropped_halfway(server: FakeServer, tmp_path: Path) -> None:
    data = _payload()
    half = len(data) // 2
    server.files["/a.bin"] = data
    server.drop_after["/a.bin"] = [half]
    dest = tmp_path / "a.bin"
    seen = []
    download(server.url("/a.bin"), dest, len(data), _md5(data), on_progress=lambda d, t: seen.append((d, t)), **FAST)
    assert dest.read_bytes() == data
    assert [(h.range, h.status) for h in server.hits] == [(None, 200), (f"bytes={half}-", 206)]
    assert seen[-1] == (len(data), len(data))
    assert not dest.with_name("a.bin.part").exists()


def test_resume_part_left_by_an_earlier_run(server: FakeServer, tmp_path: Path) -> None:
    data = _payload()
    server.files["/a.bin"] = data
    dest = tmp_path / "a.bin"
    dest.with_name("a.bin.part").write_bytes(data[:12_345])
    download(server.url("/a.bin"), dest, None, _md5(data), **FAST)  # md5 covers the pre-existing bytes too
    assert dest.read_bytes() == data
    assert [(h.range, h.status) for h in server.hits] == [("bytes=12345-", 206)]


def test_many_drops_with_progress_do_not_exhaust_retries(server: FakeServer, tmp_path: Path) -> None:
    data = _payload()
    server.files["/a.bin"] = data
    server.drop_after["/a.bin"] = [10_000] * 6  # six drops, each after 10 kB of progress
    dest = tmp_path / "a.bin"
    download(server.url("/a.bin"), dest, len(data), _md5(data), **{**FAST, "retries": 1})
    assert dest.read_bytes() == data
    assert [h.range for h in server.hits] == [None] + [f"bytes={10_000 * k}-" for k in range(1, 7)]


def test_drops_without_progress_exhaust_retries(server: FakeServer, tmp_path: Path) -> None:
    data = _payload()
    server.files["/a.bin"] = data
    server.drop_after["/a.bin"] = [10_000, 0, 0, 0]  # progress once, then none
    with pytest.raises(DownloadError, match="short read"):
        download(server.url("/a.bin"), tmp_path / "a.bin", len(data), _md5(data), **{**FAST, "retries": 2})
    assert len(server.hits) == 4  # 1 with progress + 3 without (the first failure, then 2 retries)
    assert (tmp_path / "a.bin.part").stat().st_size == 10_000  # kept: a rerun resumes it


def test_server_without_range_support_restarts_cleanly(server: FakeServer, tmp_path: Path) -> None:
    data = _payload()
    server.files["/a.bin"] = data
    server.ignore_range = True
    dest = tmp_path / "a.bin"
    dest.with_name("a.bin.part").write_bytes(b"\xff" * 777)  # garbage: appending to it would be caught
    download(server.url("/a.bin"), dest, len(data), _md5(data), **FAST)
    assert dest.read_bytes() == data
    assert [(h.range, h.status) for h in server.hits] == [("bytes=777-", 200)]


def test_drop_then_server_ignores_range(server: FakeServer, tmp_path: Path) -> None:
    data = _payload()
    server.files["/a.bin"] = data
    server.drop_after["/a.bin"] = [5000]
    server.ignore_range = True
    dest = tmp_path / "a.bin"
    download(server.url("/a.bin"), dest, len(data), _md5(data), **FAST)
    assert dest.read_bytes() == data
    assert [(h.range, h.status) for h in server.hits] == [(None, 200), ("bytes=5000-", 200)]


def test_404_is_a_clear_error_without_retry_or_files(server: FakeServer, tmp_path: Path) -> None:
    url = server.url("/missing.zip")
    with pytest.raises(DownloadError, match=re.escape(url) + ".*404"):
        download(url, tmp_path / "missing.zip", 10, None, **FAST)
    assert len(server.hits) == 1
    assert _leftovers(tmp_path) == []


def test_wrong_checksum_moves_file_aside(server: FakeServer, tmp_path: Path) -> None:
    data = _payload()
    server.files["/a.bin"] = data
    dest = tmp_path / "a.bin"
    with pytest.raises(ChecksumMismatchError) as caught:
        download(server.url("/a.bin"), dest, len(data), "0" * 32, **FAST)
    message = str(caught.value)
    assert "0" * 32 in message and _md5(data) in message
    assert _leftovers(tmp_path) == ["a.bin.bad"]
    assert caught.value.bad_path == tmp_path / "a.bin.bad"
    assert (tmp_path / "a.bin.bad").read_bytes() == data
    # A second failure never overwrites the first .bad file.
    with pytest.raises(ChecksumMismatchError):
        download(server.url("/a.bin"), dest, len(data), "1" * 32, **FAST)
    assert _leftovers(tmp_path) == ["a.bin.bad", "a.bin.bad.1"]


def test_server_reported_size_differs_from_expected(server: FakeServer, tmp_path: Path) -> None:
    """A server announcing another size fails at once (no 18 GB download to find out), not retried."""
    data = _payload(1000)
    server.files["/a.bin"] = data
    dest = tmp_path / "a.bin"
    with pytest.raises(DownloadError, match="server reports 1000 bytes, expected 999"):
        download(server.url("/a.bin"), dest, 999, None, **FAST)
    assert len(server.hits) == 1 and not dest.exists()


def test_5xx_then_success(server: FakeServer, tmp_path: Path) -> None:
    data = _payload()
    server.files["/a.bin"] = data
    server.fail["/a.bin"] = [503, 500]
    dest = tmp_path / "a.bin"
    download(server.url("/a.bin"), dest, len(data), _md5(data), **FAST)
    assert dest.read_bytes() == data
    assert [h.status for h in server.hits] == [503, 500, 200]


def test_retries_exhausted(server: FakeServer, tmp_path: Path) -> None:
    server.files["/a.bin"] = _payload(100)
    server.fail["/a.bin"] = [502] * 10
    with pytest.raises(DownloadError, match="giving up after 3 attempts.*502"):
        download(server.url("/a.bin"), tmp_path / "a.bin", 100, None, **{**FAST, "retries": 2})
    assert len(server.hits) == 3
    assert not (tmp_path / "a.bin").exists()


def test_timeout_is_retried(server: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = _payload(5000)
    server.files["/a.bin"] = data
    server.stall_s["/a.bin"] = 0.6
    dest = tmp_path / "a.bin"
    with caplog.at_level("WARNING", logger="pipeline.lib.fetch"):
        download(server.url("/a.bin"), dest, len(data), _md5(data), **{**FAST, "timeout_s": 0.2})
    assert dest.read_bytes() == data
    assert any("retry 1/3" in record.getMessage() and "timed out" in record.getMessage() for record in caplog.records)


def test_complete_part_gets_416_and_is_accepted(server: FakeServer, tmp_path: Path) -> None:
    data = _payload(4000)
    server.files["/a.bin"] = data
    dest = tmp_path / "a.bin"
    dest.with_name("a.bin.part").write_bytes(data)
    download(server.url("/a.bin"), dest, None, _md5(data), **FAST)
    assert dest.read_bytes() == data
    assert [(h.range, h.status) for h in server.hits] == [("bytes=4000-", 416)]


def test_complete_part_of_known_size_needs_no_request(server: FakeServer, tmp_path: Path) -> None:
    data = _payload(4000)
    dest = tmp_path / "a.bin"
    dest.with_name("a.bin.part").write_bytes(data)
    download(server.url("/a.bin"), dest, len(data), _md5(data), **FAST)
    assert dest.read_bytes() == data and server.hits == []


def test_existing_dest_verified_without_request(server: FakeServer, tmp_path: Path) -> None:
    data = _payload(3000)
    dest = tmp_path / "a.bin"
    dest.write_bytes(data)
    download(server.url("/a.bin"), dest, len(data), _md5(data), **FAST)
    assert server.hits == []


def test_existing_bad_dest_moved_aside_and_downloaded_again(server: FakeServer, tmp_path: Path) -> None:
    data = _payload(3000)
    server.files["/a.bin"] = data
    dest = tmp_path / "a.bin"
    dest.write_bytes(b"corrupt")
    download(server.url("/a.bin"), dest, len(data), _md5(data), **FAST)
    assert dest.read_bytes() == data
    assert (tmp_path / "a.bin.bad").read_bytes() == b"corrupt"


def test_only_http_urls(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="only http and https"):
        download("file:///etc/passwd", tmp_path / "x", None, None, **FAST)


def test_connection_refused_is_retried_then_reported(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port on 127.0.0.1 that nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DownloadError, match="giving up after 2 attempts"):
        download(f"http://127.0.0.1:{port}/x.zip", tmp_path / "x.zip", None, None, **{**FAST, "retries": 1})
    assert _leftovers(tmp_path) == []


def test_apply_mirror_and_archive_name() -> None:
    url = "http://images.cocodataset.org/zips/val2017.zip"
    assert apply_mirror(url, "") == url
    assert apply_mirror(url, "http://127.0.0.1:8000") == "http://127.0.0.1:8000/zips/val2017.zip"
    assert apply_mirror(url, "https://m.example/data/") == "https://m.example/data/zips/val2017.zip"
    with pytest.raises(ValueError, match="mirror"):
        apply_mirror(url, "m.example")
    assert archive_name(url) == "val2017.zip"
    with pytest.raises(ValueError):
        archive_name("http://host/")


def test_parse_content_range() -> None:
    assert transfer._parse_content_range("bytes 100-199/1000") == (100, 1000)
    assert transfer._parse_content_range("bytes */1000") == (None, 1000)
    assert transfer._parse_content_range("junk") == (None, None)
    assert transfer._parse_content_range(None) == (None, None)


# --------------------------------------------------------------------------------------------
# safe_extract()
# --------------------------------------------------------------------------------------------


def _tar_bytes(members: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tf:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tf.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tf.addfile(info, io.BytesIO(member[1]))
    return buffer.getvalue()


def _special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def _assert_nothing_extracted(tmp_path: Path, target: Path) -> None:
    assert not target.exists()
    assert not list(tmp_path.glob(".*tmp-*")), "temporary extraction folder left behind"
    assert not (tmp_path / "evil.txt").exists()


def test_extract_zip_into_new_then_existing_target(tmp_path: Path) -> None:
    first = tmp_path / "a.zip"
    first.write_bytes(_zip_bytes({"train2017/x.jpg": b"x", "train2017/sub/y.jpg": b"y"}))
    second = tmp_path / "b.zip"
    second.write_bytes(_zip_bytes({"annotations/k.json": b"{}"}))
    target = tmp_path / "coco"
    assert safe_extract(first, target, progress=True) == [target / "train2017"]
    assert (target / "train2017" / "sub" / "y.jpg").read_bytes() == b"y"
    assert not list(tmp_path.glob(".*tmp-*"))
    assert safe_extract(second, target, progress=False) == [target / "annotations"]
    assert sorted(p.name for p in target.iterdir()) == ["annotations", "train2017"]
    assert not list(tmp_path.glob(".*tmp-*"))
    # Extracting again would overwrite: refused, nothing moved, no temp folder left.
    with pytest.raises(FileExistsError, match="annotations"):
        safe_extract(second, target, progress=False)
    assert (target / "annotations" / "k.json").read_bytes() == b"{}"
    assert not list(tmp_path.glob(".*tmp-*"))


def test_extract_tar_gz(tmp_path: Path) -> None:
    archive = tmp_path / "v.tar.gz"
    archive.write_bytes(_tar_bytes([("VOCdevkit/VOC2012/a.txt", b"abc")], mode="w:gz"))
    target = tmp_path / "voc"
    safe_extract(archive, target, progress=False)
    assert (target / "VOCdevkit" / "VOC2012" / "a.txt").read_bytes() == b"abc"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../evil.txt", "'..'"),
        ("ok/../../evil.txt", "'..'"),
        ("..\\evil.txt", "'..'"),
        ("/tmp/evil.txt", "absolute"),
        ("C:/evil.txt", "absolute"),
    ],
)
def test_zip_escaping_member_refused(tmp_path: Path, name: str, reason: str) -> None:
    archive = tmp_path / "bad.zip"
    archive.write_bytes(_zip_bytes({"good/a.txt": b"a", name: b"evil"}))
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=re.escape(repr(name)) + ".*" + reason):
        safe_extract(archive, target, progress=False)
    _assert_nothing_extracted(tmp_path, target)


def test_zip_symlink_member_refused(tmp_path: Path) -> None:
    info = zipfile.ZipInfo("link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    archive = tmp_path / "bad.zip"
    archive.write_bytes(buffer.getvalue())
    with pytest.raises(UnsafeArchiveError, match="'link' is a symlink"):
        safe_extract(archive, tmp_path / "out", progress=False)
    _assert_nothing_extracted(tmp_path, tmp_path / "out")


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (_special("data/link", tarfile.SYMTYPE, "../../evil.txt"), "symlink"),
        (_special("data/link", tarfile.SYMTYPE, "/etc/passwd"), "symlink"),
        (_special("data/hard", tarfile.LNKTYPE, "/etc/passwd"), "hardlink"),
        (_special("data/dev", tarfile.CHRTYPE), "device"),
        (_special("data/blk", tarfile.BLKTYPE), "device"),
        (_special("data/pipe", tarfile.FIFOTYPE), "fifo"),
        (("/tmp/evil.txt", b"evil"), "absolute"),
        (("../evil.txt", b"evil"), "'..'"),
    ],
)
def test_tar_unsafe_member_refused(tmp_path: Path, member: tarfile.TarInfo | tuple[str, bytes], reason: str) -> None:
    archive = tmp_path / "bad.tar"
    archive.write_bytes(_tar_bytes([("data/ok.txt", b"ok"), member]))
    target = tmp_path / "out"
    name = member.name if isinstance(member, tarfile.TarInfo) else member[0]
    with pytest.raises(UnsafeArchiveError, match=re.escape(repr(name)) + ".*" + reason):
        safe_extract(archive, target, progress=False)
    _assert_nothing_extracted(tmp_path, target)


@pytest.mark.parametrize(
    "member",
    [
        _special("data/link", tarfile.SYMTYPE, "../../evil.txt"),
        _special("data/dev", tarfile.CHRTYPE),
        ("data/../../evil.txt", b"evil"),
    ],
)
def test_tar_data_filter_is_a_second_line_of_defence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, member: tarfile.TarInfo | tuple[str, bytes]
) -> None:
    """With our own member check switched off, tarfile's "data" filter (or our path resolution) still refuses."""
    monkeypatch.setattr(archives, "_check_tar_member", lambda info, archive: PurePosixPath(info.name))
    archive = tmp_path / "bad.tar"
    archive.write_bytes(_tar_bytes([("data/ok.txt", b"ok"), member]))
    target = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError):
        safe_extract(archive, target, progress=False)
    _assert_nothing_extracted(tmp_path, target)


def test_zip_path_resolution_is_a_second_line_of_defence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archives, "_check_zip_member", lambda info, archive: PurePosixPath(info.filename))
    archive = tmp_path / "bad.zip"
    archive.write_bytes(_zip_bytes({"good/a.txt": b"a", "good/../../evil.txt": b"evil"}))
    with pytest.raises(UnsafeArchiveError, match="resolves outside"):
        safe_extract(archive, tmp_path / "out", progress=False)
    _assert_nothing_extracted(tmp_path, tmp_path / "out")


def test_corrupt_member_midway_leaves_no_partial_target(tmp_path: Path) -> None:
    first, second = _payload(20_000), _payload(30_000)[::-1]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("d/first.bin", first)
        zf.writestr("d/second.bin", second)
    raw = bytearray(buffer.getvalue())
    spot = raw.find(second[:64]) + 1000  # inside the second member's stored bytes: CRC fails on read
    raw[spot] ^= 0xFF
    archive = tmp_path / "c.zip"
    archive.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match="corrupt"):
        safe_extract(archive, tmp_path / "out", progress=False)
    _assert_nothing_extracted(tmp_path, tmp_path / "out")


def test_not_an_archive(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello")
    with pytest.raises(ArchiveError, match="neither a zip nor a tar"):
        safe_extract(junk, tmp_path / "out", progress=False)
    truncated = tmp_path / "t.zip"
    truncated.write_bytes(_zip_bytes({"a": b"a" * 100})[:50])
    with pytest.raises(ArchiveError, match="corrupt"):
        safe_extract(truncated, tmp_path / "out", progress=False)
    _assert_nothing_extracted(tmp_path, tmp_path / "out")


# --------------------------------------------------------------------------------------------
# Layout checks, manifest, prepare_dataset()
# --------------------------------------------------------------------------------------------


def test_layout_checks_on_the_sample_and_on_broken_copies(tmp_path: Path) -> None:
    assert check_coco_layout(SAMPLE / "coco") == []
    assert check_voc_layout(SAMPLE / "voc") == []
    problems = check_coco_layout(tmp_path)
    assert len(problems) == 4 and any("person_keypoints_train2017.json" in p for p in problems)
    assert check_coco_layout(tmp_path / "nope") == [f"{tmp_path / 'nope'}: no such folder"]
    (tmp_path / "val2017").mkdir()  # empty image folder does not count
    assert any("val2017: missing or empty" in p for p in check_coco_layout(tmp_path, splits=("val",)))
    voc_problems = check_voc_layout(SAMPLE / "voc" / "VOCdevkit" / "VOC2012")
    assert any("pass the folder that holds VOCdevkit/" in p for p in voc_problems)


def test_write_manifest_is_complete_json(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    archive.write_bytes(b"abc")
    other = tmp_path / "b.zip"
    other.write_bytes(b"defg")
    path = write_manifest(tmp_path / "ds", [archive, other], known_md5={"b.zip": "ABCDEF"}, extra={"n": (1, 2)})
    assert path == tmp_path / "ds" / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    assert manifest["root"] == str((tmp_path / "ds").resolve())
    assert manifest["files"][0] == {"name": "a.zip", "path": str(archive), "size": 3, "md5": _md5(b"abc")}
    assert manifest["files"][1]["md5"] == "abcdef" and manifest["n"] == [1, 2]
    assert _leftovers(tmp_path / "ds") == [MANIFEST_NAME]


def _tiny_coco_archives() -> dict[str, bytes]:
    """Three zips shaped like the official ones, built from a few sample files."""
    annotations = {
        f"annotations/person_keypoints_{split}2017.json": (
            SAMPLE / "coco" / "annotations" / f"person_keypoints_{split}2017.json"
        ).read_bytes()
        for split in ("train", "val")
    }
    zips = {"annotations_trainval2017.zip": _zip_bytes(annotations)}
    for split in ("train", "val"):
        images = sorted((SAMPLE / "coco" / f"{split}2017").glob("*.jpg"))[:2]
        zips[f"{split}2017.zip"] = _zip_bytes({f"{split}2017/{p.name}": p.read_bytes() for p in images})
    return zips


def test_prepare_dataset_downloads_then_reruns_resume_extraction(server: FakeServer, tmp_path: Path) -> None:
    zips = _tiny_coco_archives()
    paths = {
        "train2017.zip": "/zips/train2017.zip",
        "val2017.zip": "/zips/val2017.zip",
        "annotations_trainval2017.zip": "/annotations/annotations_trainval2017.zip",
    }
    for name, path in paths.items():
        server.files[path] = zips[name]
    specs = [ArchiveSpec(server.url(path), len(zips[name]), _md5(zips[name])) for name, path in paths.items()]
    root, archives = tmp_path / "coco", tmp_path / "archives"
    statuses: list[tuple[float, str]] = []
    options = DownloadOptions(**FAST)
    record = prepare_dataset(
        root,
        specs,
        archives,
        check_coco_layout,
        dataset="coco",
        options=options,
        on_status=lambda pct, msg: statuses.append((pct, msg)),
    )
    manifest_path = Path(record["manifest"])
    assert manifest_path == root / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    assert record == {**manifest, "manifest": str(manifest_path)}
    assert manifest["source"] == "downloaded" and manifest["dataset"] == "coco"
    assert {f["name"]: (f["size"], f["md5"]) for f in manifest["files"]} == {
        name: (len(data), _md5(data)) for name, data in zips.items()
    }
    assert check_coco_layout(root) == []
    assert statuses[0][0] == 0.0 and statuses[-1] == (100.0, "coco: complete")
    assert all(a[0] <= b[0] for a, b in zip(statuses, statuses[1:], strict=False))
    assert len(server.hits) == 3

    # A rerun after losing one extracted folder: archives verified locally (no request), only val redone.
    manifest_path.unlink()
    train_before = (root / "train2017").stat().st_ino
    for gone in (root / "val2017", root / ".extracted-val2017.zip.json"):
        if gone.is_dir():
            for child in gone.iterdir():
                child.unlink()
            gone.rmdir()
        else:
            gone.unlink()
    prepare_dataset(root, specs, archives, check_coco_layout, dataset="coco", options=options, keep_archives=False)
    assert check_coco_layout(root) == [] and len(server.hits) == 3
    assert (root / "train2017").stat().st_ino == train_before
    assert list(archives.iterdir()) == []  # keep_archives=False


def test_prepare_dataset_uses_existing_copy_without_network(server: FakeServer, tmp_path: Path) -> None:
    root = tmp_path / "voc"
    for sub in ("JPEGImages", "SegmentationObject", "SegmentationClass", "ImageSets/Segmentation"):
        source = SAMPLE / "voc" / "VOCdevkit" / "VOC2012" / sub
        dest = root / "VOCdevkit" / "VOC2012" / sub
        dest.mkdir(parents=True)
        for file in source.iterdir():
            (dest / file.name).write_bytes(file.read_bytes())
    specs = [ArchiveSpec(server.url("/voc.tar"), 1, "0" * 32)]
    before = sorted(str(path) for path in root.rglob("*"))
    record = prepare_dataset(
        root, specs, tmp_path / "archives", check_voc_layout, dataset="voc", options=DownloadOptions(**FAST)
    )
    assert record["source"] == EXISTING_COPY and record["root"] == str(root.resolve()) and record["files"] == []
    assert sorted(str(path) for path in root.rglob("*")) == before  # nothing written into the copy
    assert server.hits == [] and not (tmp_path / "archives").exists()


def test_prepare_dataset_reports_a_wrong_layout(server: FakeServer, tmp_path: Path) -> None:
    data = _zip_bytes({"something_else/a.txt": b"a"})
    server.files["/x.zip"] = data
    with pytest.raises(fetch.LayoutError, match="person_keypoints_val2017.json"):
        prepare_dataset(
            tmp_path / "coco",
            [ArchiveSpec(server.url("/x.zip"), len(data), _md5(data))],
            tmp_path / "archives",
            lambda root: check_coco_layout(root, splits=("val",)),
            dataset="coco",
            options=DownloadOptions(**FAST),
        )
    assert not (tmp_path / "coco" / MANIFEST_NAME).exists()
