"""download_release against a real HTTP server on 127.0.0.1 serving a small MovieLens-like zip."""

from __future__ import annotations

import functools
import hashlib
import socket
import subprocess
import sys
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from movierec.data.download import DownloadError, download_release, network_allows
from movierec.data.layouts import SourceError

RELEASE = "ml-latest-small"
from tests.helpers import ROOT


class Served:
    def __init__(self, folder: Path, url: str, requests: list[str]):
        self.folder, self.url, self.requests = folder, url, requests

    def hits(self, name: str) -> int:
        return sum(1 for path in self.requests if path == f"/{name}")


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    # A proxy from the environment would turn 127.0.0.1 requests into outside traffic.
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, fmt, *args):  # record instead of printing to stderr
            requests.append(self.path)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
    # A short poll interval keeps shutdown() quick at teardown.
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield Served(folder, f"http://127.0.0.1:{httpd.server_address[1]}", requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def publish(folder: Path, release: str = RELEASE, md5: str | None = None) -> bytes:
    """Writes <release>.zip and its .md5 (GroupLens style: digest, spaces, file name)."""
    zip_path = folder / f"{release}.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{release}/movies.csv", "movieId,title,genres\n"
                   "1,Toy Story (1995),Adventure|Animation\n2,Heat (1995),Action\n")
        z.writestr(f"{release}/ratings.csv",
                   "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,2,3.5,964981247\n")
    data = zip_path.read_bytes()
    digest = md5 or hashlib.md5(data).hexdigest()
    (folder / f"{release}.zip.md5").write_text(f"{digest}  {release}.zip\n")
    return data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_gives_the_served_file(server, tmp_path, caplog):
    data = publish(server.folder)
    dest = tmp_path / "raw"
    with caplog.at_level("INFO", logger="movierec.data.download"):
        path = download_release(RELEASE, dest, server.url, 5)
    assert "(100%)" in caplog.text and "verified" in caplog.text
    assert path == dest / f"{RELEASE}.zip"
    assert path.read_bytes() == data
    assert zipfile.ZipFile(path).namelist() == [f"{RELEASE}/movies.csv", f"{RELEASE}/ratings.csv"]
    assert [p.name for p in dest.iterdir()] == [path.name]  # no temp file left behind


def test_second_call_does_not_download_again(server, tmp_path):
    publish(server.folder)
    first = download_release(RELEASE, tmp_path, server.url, 5)
    mtime = first.stat().st_mtime_ns
    second = download_release(RELEASE, tmp_path, server.url, 5)
    assert second == first and second.stat().st_mtime_ns == mtime
    assert server.hits(f"{RELEASE}.zip") == 1
    assert server.hits(f"{RELEASE}.zip.md5") == 2


def test_corrupt_local_copy_is_replaced(server, tmp_path):
    data = publish(server.folder)
    (tmp_path / f"{RELEASE}.zip").write_bytes(b"truncated")
    path = download_release(RELEASE, tmp_path, server.url, 5)
    assert path.read_bytes() == data
    assert server.hits(f"{RELEASE}.zip") == 1


def test_checksum_mismatch_raises_and_leaves_nothing(server, tmp_path):
    wrong = "0" * 32
    data = publish(server.folder, md5=wrong)
    dest = tmp_path / "raw"
    with pytest.raises(DownloadError) as err:
        download_release(RELEASE, dest, server.url, 5)
    msg = str(err.value)
    assert wrong in msg and hashlib.md5(data).hexdigest() in msg
    assert f"{server.url}/{RELEASE}.zip" in msg
    assert list(dest.iterdir()) == []
    assert isinstance(err.value, SourceError)


def test_missing_release_names_the_url(server, tmp_path):
    with pytest.raises(DownloadError, match="404") as err:
        download_release("ml-1m", tmp_path, server.url, 5)
    assert f"{server.url}/ml-1m.zip.md5" in str(err.value)


def test_missing_zip_next_to_its_md5(server, tmp_path):
    publish(server.folder)
    (server.folder / f"{RELEASE}.zip").unlink()
    dest = tmp_path / "raw"
    with pytest.raises(DownloadError, match="404") as err:
        download_release(RELEASE, dest, server.url, 5)
    assert f"{server.url}/{RELEASE}.zip" in str(err.value)
    assert list(dest.iterdir()) == []


def test_refused_connection(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(DownloadError) as err:
        download_release(RELEASE, tmp_path, url, 2)
    assert url in str(err.value) and "refused" in str(err.value).lower()


def test_garbage_md5_file(server, tmp_path):
    publish(server.folder)
    (server.folder / f"{RELEASE}.zip.md5").write_text("<html>not found</html>")
    with pytest.raises(DownloadError, match="not an md5"):
        download_release(RELEASE, tmp_path, server.url, 5)


def test_unknown_release_lists_the_known_ones(tmp_path):
    with pytest.raises(DownloadError, match="ml-latest-small.*ml-100k"):
        download_release("ml-999m", tmp_path, "http://127.0.0.1:9", 1)


def test_network_allows(server):
    assert not network_allows(server.url, 2)  # server up, but nothing published
    publish(server.folder)
    assert network_allows(server.url, 2)
    assert not network_allows(f"http://127.0.0.1:{free_port()}", 2)


def test_cli(server, tmp_path):
    data = publish(server.folder)
    cmd = [sys.executable, str(ROOT / "jobs" / "download_movielens.py"), "--profile", "test",
           "--set", f"download.base_url={server.url}"]
    ok = subprocess.run(cmd + ["--dest", str(tmp_path / "raw")], capture_output=True, text=True,
                        timeout=30)
    assert ok.returncode == 0, ok.stderr
    assert Path(ok.stdout.strip()).read_bytes() == data

    bad = subprocess.run(cmd + ["--release", "ml-100k", "--dest", str(tmp_path)],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1
    assert "download failed" in bad.stderr and "ml-100k.zip.md5" in bad.stderr
