"""Download a named MovieLens release from GroupLens, verified against its published md5.

GroupLens serves `<base_url>/<release>.zip` and, next to it, `<release>.zip.md5`. The zip is
streamed to a temporary file in the destination folder and renamed into place only once its
digest matches, so `<dest>/<release>.zip` is never a partial or corrupt file.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from movierec.data.layouts import SourceError

log = logging.getLogger(__name__)

KNOWN_RELEASES = ("ml-latest-small", "ml-latest", "ml-25m", "ml-20m", "ml-32m",
                  "ml-10m", "ml-1m", "ml-100k")
DEFAULT_BASE_URL = "https://files.grouplens.org/datasets/movielens"

_CHUNK = 1 << 20
_LOG_EVERY_BYTES = 16 << 20  # when the server sends no Content-Length
_MD5 = re.compile(r"[0-9a-fA-F]{32}")
# OSError covers timeouts and resets; HTTPException a connection cut mid-body (IncompleteRead).
_NETWORK_ERRORS = (urllib.error.URLError, OSError, http.client.HTTPException)


class DownloadError(SourceError):
    """A release that could not be fetched or did not match its checksum."""


def _url(base_url: str, name: str) -> str:
    return f"{base_url.rstrip('/')}/{name}"


def _failure(url: str, e: Exception) -> DownloadError:
    if isinstance(e, urllib.error.HTTPError):
        return DownloadError(f"{url}: HTTP {e.code} {e.reason}")
    reason = e.reason if isinstance(e, urllib.error.URLError) else e
    return DownloadError(f"{url}: {reason or type(e).__name__}")


def _fetch_md5(base_url: str, release: str, timeout_s: float) -> str:
    url = _url(base_url, f"{release}.zip.md5")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            text = resp.read(4096).decode("ascii", "replace")
    except _NETWORK_ERRORS as e:
        raise _failure(url, e) from e
    # The file holds the digest, optionally followed by whitespace and a file name.
    digest = text.split()[0] if text.split() else ""
    if not _MD5.fullmatch(digest):
        raise DownloadError(f"{url}: not an md5 digest: {text[:80]!r}")
    return digest.lower()


def _md5_of(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _stream(url: str, out, timeout_s: float) -> str:
    """Copies the response at `url` into `out`, logging progress; returns its md5."""
    h, done, started = hashlib.md5(), 0, time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        total = int(resp.headers.get("Content-Length") or 0)
        step = max(total // 10, 1) if total else _LOG_EVERY_BYTES
        next_log = step
        for block in iter(lambda: resp.read(_CHUNK), b""):
            out.write(block)
            h.update(block)
            done += len(block)
            if done >= next_log:
                pct = f" ({100 * done // total}%)" if total else ""
                log.info("%s: %.1f MB%s in %.1fs", url, done / 1e6, pct,
                         time.perf_counter() - started)
                next_log = (done // step + 1) * step
        if total and done != total:
            raise DownloadError(f"{url}: got {done} bytes, expected {total}")
    log.info("%s: %.1f MB downloaded in %.1fs", url, done / 1e6, time.perf_counter() - started)
    return h.hexdigest()


def download_release(release: str, dest_dir: Path, base_url: str = DEFAULT_BASE_URL,
                     timeout_s: float = 20) -> Path:
    """`<dest_dir>/<release>.zip`, downloaded unless a copy matching the checksum is there."""
    if release not in KNOWN_RELEASES:
        raise DownloadError(f"unknown MovieLens release {release!r}; known: "
                            f"{', '.join(KNOWN_RELEASES)}")
    dest_dir = Path(dest_dir)
    final = dest_dir / f"{release}.zip"
    expected = _fetch_md5(base_url, release, timeout_s)
    if final.is_file():
        if _md5_of(final) == expected:
            log.info("%s already present and verified (md5 %s)", final, expected)
            return final
        log.warning("%s does not match md5 %s: downloading it again", final, expected)

    url = _url(base_url, f"{release}.zip")
    dest_dir.mkdir(parents=True, exist_ok=True)
    # Same folder as the target, so the final rename is atomic (same filesystem).
    fd, tmp_name = tempfile.mkstemp(prefix=f".{release}.", suffix=".part", dir=dest_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                actual = _stream(url, out, timeout_s)
            except _NETWORK_ERRORS as e:
                raise _failure(url, e) from e
        if actual != expected:
            raise DownloadError(f"{url}: checksum mismatch: expected md5 {expected}, got {actual}")
        tmp.chmod(0o644)  # mkstemp makes it private; the data is public and shared with Spark
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("%s saved and verified (md5 %s)", final, expected)
    return final


def network_allows(base_url: str = DEFAULT_BASE_URL, timeout_s: float = 5,
                   release: str = "ml-latest-small") -> bool:
    """Whether the release's checksum file can be fetched: decides download vs synthetic data."""
    try:
        _fetch_md5(base_url, release, timeout_s)
        return True
    except DownloadError as e:
        log.info("no download possible: %s", e)
        return False
