"""Downloads against an HTTP server on loopback: success, resume, checksums."""

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

import tfrecord_to_hdf5
from utils import download as dl
from utils.download import DownloadError, download, fetch, sha256_of
from utils.tfrecord import encode_payload, write_records

CONTENT = bytes(range(256)) * 4096  # 1 MiB


class Server:
    """Serves files from memory with range requests; can cut connections."""

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.cuts = 0  # connections still to cut halfway
        self.ranges = []  # the Range header of every request
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.ranges.append(self.headers.get("Range"))
                body = outer.files.get(self.path.lstrip("/"))
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header(
                        "Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}"
                    )
                else:
                    self.send_response(200)
                rest = body[start:]
                self.send_header("Content-Length", str(len(rest)))
                self.end_headers()
                if outer.cuts:
                    outer.cuts -= 1
                    self.wfile.write(rest[: len(rest) // 3])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(rest)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_succeeds_and_verifies(tmp_path):
    with Server({"f.bin": CONTENT}) as server:
        path = download(server.url + "f.bin", tmp_path / "f.bin", sha(CONTENT))
    assert path.read_bytes() == CONTENT
    assert not (tmp_path / "f.bin.part").exists()
    assert sha256_of(path) == sha(CONTENT)


def test_cut_connections_are_resumed(tmp_path):
    with Server({"f.bin": CONTENT}) as server:
        server.cuts = 2
        download(server.url + "f.bin", tmp_path / "f.bin", sha(CONTENT), progress=False)
        ranges = server.ranges
    assert (tmp_path / "f.bin").read_bytes() == CONTENT
    assert ranges[0] is None and all(r and r.startswith("bytes=") for r in ranges[1:])
    assert len(ranges) == 3


def test_a_partial_file_from_an_earlier_run_is_resumed(tmp_path):
    (tmp_path / "f.bin.part").write_bytes(CONTENT[:1000])
    with Server({"f.bin": CONTENT}) as server:
        download(server.url + "f.bin", tmp_path / "f.bin", sha(CONTENT), progress=False)
        assert server.ranges == ["bytes=1000-"]
    assert (tmp_path / "f.bin").read_bytes() == CONTENT


def test_a_complete_partial_file_is_finished_without_refetching(tmp_path):
    (tmp_path / "f.bin.part").write_bytes(CONTENT)
    with Server({"f.bin": CONTENT}) as server:
        download(server.url + "f.bin", tmp_path / "f.bin", sha(CONTENT), progress=False)
    assert (tmp_path / "f.bin").read_bytes() == CONTENT


def test_too_many_cuts_keep_the_partial_file(tmp_path):
    with Server({"f.bin": CONTENT}) as server:
        server.cuts = 10
        with pytest.raises(DownloadError, match=r"failed after 2 retries .* run again"):
            download(server.url + "f.bin", tmp_path / "f.bin", sha(CONTENT), retries=2)
    assert 0 < (tmp_path / "f.bin.part").stat().st_size < len(CONTENT)


def test_checksum_mismatch_keeps_the_file_and_says_what_to_do(tmp_path):
    with Server({"f.bin": CONTENT}) as server:
        with pytest.raises(
            DownloadError,
            match=r"SHA-256 of the downloaded .*f\.bin\.part is [0-9a-f]{64}, "
            r"expected 0{64}; the file is kept.*delete",
        ):
            download(server.url + "f.bin", tmp_path / "f.bin", "0" * 64)
    assert (tmp_path / "f.bin.part").read_bytes() == CONTENT
    assert not (tmp_path / "f.bin").exists()


def test_an_existing_file_that_does_not_match_is_not_touched(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"the user's own")
    with pytest.raises(DownloadError, match=r"exists but its SHA-256 is .* move it"):
        download("http://127.0.0.1:9/f.bin", tmp_path / "f.bin", sha(CONTENT))
    assert (tmp_path / "f.bin").read_bytes() == b"the user's own"


def test_an_existing_matching_file_is_not_downloaded_again(tmp_path):
    (tmp_path / "f.bin").write_bytes(CONTENT)
    # Port 9 (discard) is closed: any request would fail.
    path = download("http://127.0.0.1:9/f.bin", tmp_path / "f.bin", sha(CONTENT))
    assert path.read_bytes() == CONTENT


def test_missing_file_on_the_server(tmp_path):
    with Server({}) as server:
        with pytest.raises(DownloadError, match=r"cannot fetch .*: HTTP 404"):
            download(server.url + "nothing", tmp_path / "x")


def test_fetch_unknown_name(tmp_path):
    with pytest.raises(ValueError, match=r"unknown file 'half', expected one of"):
        fetch("half", tmp_path)


def test_fetch_uses_the_environment_mirror(tmp_path, monkeypatch):
    monkeypatch.setitem(dl.PUBLISHED, "only108", ("x.tfrecord", sha(CONTENT)))
    with Server({"mirror/x.tfrecord": CONTENT}) as server:
        monkeypatch.setenv("NASBENCH_BASE_URL", server.url + "mirror")
        path = fetch("only108", tmp_path, progress=False)
    assert path == tmp_path / "x.tfrecord" and path.read_bytes() == CONTENT


@pytest.fixture
def records(golden_dir, tmp_path) -> bytes:
    return (golden_dir / "golden-4.tfrecord").read_bytes()


def test_script_downloads_then_converts(records, tmp_path, monkeypatch):
    monkeypatch.setitem(
        dl.PUBLISHED, "only108", ("nasbench_only108.tfrecord", sha(records))
    )
    with Server({"nasbench_only108.tfrecord": records}) as server:
        server.cuts = 1
        status = tfrecord_to_hdf5.main(
            ["--download", "only108", "--data-dir", str(tmp_path)]
            + ["--base-url", server.url, "--quiet"]
        )
    assert status == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "nasbench_only108.hdf5",
        "nasbench_only108.tfrecord",
    ]


def test_script_download_checksum_mismatch(tmp_path, caplog):
    payloads = [encode_payload("a" * 32, 108, [[0, 1], [0, 0]], ["input", "output"])]
    write_records(tmp_path / "served", payloads)
    served = (tmp_path / "served").read_bytes()
    data = tmp_path / "data"
    with Server({"nasbench_only108.tfrecord": served}) as server:
        status = tfrecord_to_hdf5.main(
            ["--download", "only108", "--data-dir", str(data), "--base-url", server.url]
        )
    assert status == 1
    assert "expected 4c39c393" in caplog.text and "the file is kept" in caplog.text
    assert [p.name for p in Path(data).iterdir()] == ["nasbench_only108.tfrecord.part"]
