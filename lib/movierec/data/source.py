"""Opening a MovieLens release (folder or .zip): checksum, layout, header checks, and the
UTF-8 files Spark will read. Everything here happens before the lake is touched."""

from __future__ import annotations

import hashlib
import logging
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from movierec.data.layouts import FileSpec, Layout, SourceError, detect

log = logging.getLogger(__name__)

# A MovieLens zip holds CSV or .dat text, which DEFLATE shrinks 3-6x (ML-25M: 262 MB -> 1.1 GB);
# a member that inflates past MAX_RATIO, or a release past MAX_EXTRACTED, is a zip bomb.
MAX_RATIO = 100
MAX_EXTRACTED = 32 * 2**30
_CHUNK = 1 << 20


@dataclass(frozen=True)
class OpenedSource:
    source: Path
    layout: Layout
    folder: Path                 # the release folder the files are read from
    checksum: str
    files: dict[str, Path]       # table -> UTF-8 file Spark reads
    genres: tuple[str, ...] = ()  # ml-100k's genre names, in flag order


def checksum(path: Path) -> str:
    """sha256 of a zip, or of a folder's files (names and bytes, in name order)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def first_line(path: Path, encoding: str) -> str:
    # Bytes first: a text reader decodes a whole buffer, so an invalid byte on a later line
    # would fail the header check of a file whose header is fine.
    with path.open("rb") as fh:
        line = fh.readline(1 << 16).decode(encoding, errors="replace")
    return line.lstrip("\ufeff").split("\r")[0].rstrip("\n")   # CR alone ends a line too


def _check_header(path: Path, spec: FileSpec) -> None:
    if spec.header is None:
        return
    got = first_line(path, spec.encoding)
    if got != spec.header:
        raise SourceError(f"{path}: line 1 is {got!r}, expected the header {spec.header!r}")


def _to_utf8(path: Path, spec: FileSpec, staging: Path) -> Path:
    if spec.encoding == "utf-8":
        return path
    out = staging / "utf8" / path.name
    out.parent.mkdir(parents=True, exist_ok=True)
    with path.open("r", encoding=spec.encoding, newline="") as src, \
            out.open("w", encoding="utf-8", newline="") as dst:
        shutil.copyfileobj(src, dst)
    return out


def _read_genres(path: Path) -> tuple[str, ...]:
    pairs = []
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.strip():
            name, _, idx = line.partition("|")
            pairs.append((int(idx), name))
    return tuple(name for _, name in sorted(pairs))


def extract_safely(archive: Path, folder: Path, max_ratio: int = MAX_RATIO,
                   max_bytes: int = MAX_EXTRACTED) -> None:
    """Extracts a release zip into `folder`, refusing a member whose path leaves it (absolute,
    `..`) and a zip bomb: bytes are counted as they inflate, so a member that lies about its
    size is stopped too, after at most one chunk past the limit."""
    root = folder.resolve()
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        for m in members:
            target = (root / m.filename).resolve()
            if m.filename.startswith(("/", "\\")) or ".." in Path(m.filename).parts or not target.is_relative_to(root):
                raise SourceError(f"{archive}: member {m.filename!r} would be written outside the "
                                  "extraction folder: refused, nothing extracted")
        total = 0
        for m in members:
            target = root / m.filename
            if m.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            limit = min(max_bytes - total, m.compress_size * max_ratio + _CHUNK)
            with zf.open(m) as src, target.open("wb") as out:
                while chunk := src.read(_CHUNK):
                    total += len(chunk)
                    limit -= len(chunk)
                    if limit < 0:
                        raise SourceError(
                            f"{archive}: member {m.filename!r} inflates past {max_ratio}x its "
                            f"compressed size or the release past {max_bytes / 2**30:.0f} GiB: "
                            "refused as a zip bomb")
                    out.write(chunk)


def open_source(source: Path, staging: Path) -> OpenedSource:
    """Validates the release at `source` and makes its files readable by Spark.

    `staging` must be visible to every executor (it sits under the lake): zips are extracted
    there and Latin-1 files transcoded there.
    """
    source = Path(source)
    if not source.exists():
        raise SourceError(f"{source}: source not found (expected a MovieLens folder or .zip)")
    digest = checksum(source)
    if source.is_file():
        if not zipfile.is_zipfile(source):
            raise SourceError(f"{source}: not a zip file and not a folder")
        folder = staging / "extracted"
        shutil.rmtree(folder, ignore_errors=True)
        extract_safely(source, folder)
    else:
        folder = source
    layout, folder = detect(folder)
    files: dict[str, Path] = {}
    for spec in layout.files:
        path = folder / spec.filename
        if not path.is_file():
            continue
        _check_header(path, spec)
        files[spec.table] = _to_utf8(path, spec, staging)
    genres = _read_genres(folder / layout.genre_file) if layout.genre_file else ()
    log.info("source %s: layout %s (%s), files %s, sha256 %s", source, layout.name,
             layout.releases, sorted(p.name for p in files.values()), digest[:12])
    return OpenedSource(source, layout, folder, digest, files, genres)
