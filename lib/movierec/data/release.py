"""Where `make run`'s data comes from: a release in the raw folder, else a verified download
from GroupLens when the network allows, else a synthetic release generated here."""

from __future__ import annotations

import logging
from pathlib import Path

from movierec.core.config import Config
from movierec.data import download, synthetic
from movierec.data.layouts import SourceError, detect, match

log = logging.getLogger(__name__)


def _is_release(path: Path) -> bool:
    if path.suffix == ".zip" and path.is_file():
        return True
    if not path.is_dir():
        return False
    try:
        detect(path)
        return True
    except SourceError:
        return False


def find_release(raw_dir: Path, preferred: str) -> Path | None:
    """A MovieLens release in raw_dir (the folder itself, or a folder or .zip inside it)."""
    if not raw_dir.is_dir():
        return None
    if match(raw_dir):
        return raw_dir
    found = sorted(p for p in raw_dir.iterdir() if _is_release(p))
    named = [p for p in found if p.stem == preferred]
    return (named or found or [None])[0]


def resolve_source(cfg: Config) -> tuple[Path, str]:
    """Where the data comes from: the raw folder, else a download, else synthetic data."""
    raw_dir = cfg.path("raw_dir")
    release = cfg["download.release"]
    found = find_release(raw_dir, release)
    if found:
        return found, f"MovieLens release found in {raw_dir}"
    if download.network_allows(cfg["download.base_url"], cfg["download.timeout_s"]):
        path = download.download_release(release, raw_dir, cfg["download.base_url"],
                                         cfg["download.timeout_s"])
        return path, f"{release} downloaded from GroupLens (checksum verified)"
    scale, seed = cfg["synthetic.scale"], cfg["synthetic.seed"]
    out = raw_dir / f"synthetic-{scale}-seed{seed}"
    log.info("no release in %s and GroupLens is out of reach: generating synthetic data", raw_dir)
    synthetic.generate(out, scale=scale, seed=seed)
    return out, f"synthetic MovieLens-shaped release (scale {scale}, seed {seed}), no network"
