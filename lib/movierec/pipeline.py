"""The main job end to end on one Spark session: find or fetch a release, ingest, split."""

from __future__ import annotations

import logging
from pathlib import Path

from pyspark.sql import SparkSession

from movierec import ingest, recommend, split, train
from movierec.config import Config
from movierec.layouts import SourceError, detect, match

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
    from movierec import download, synthetic  # only the fallbacks need them

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


def run(spark: SparkSession, cfg: Config, run_date: str | None = None) -> dict:
    source, how = (cfg.path("ingest.source"), "given with --source") if cfg["ingest.source"] \
        else resolve_source(cfg)
    log.info("data: %s (%s)", source, how)
    ingested = ingest.run(spark, cfg.with_overrides({"ingest.source": str(source)}), run_date)
    splitted = split.run(spark, cfg, run_date)
    trained = train.run(spark, cfg, run_date)
    served = recommend.run(spark, cfg, run_date)
    summary = {
        "source": str(source),
        "source_kind": how,
        "layout": ingested.layout,
        "ingest": "unchanged (same source as last run)" if ingested.skipped else
        f"{ingested.rows_read:,} rows read = {ingested.rows_accepted:,} accepted + "
        f"{ingested.rows_rejected:,} rejected",
        "split": f"train {splitted.n_train:,} / test {splitted.n_test:,} / buffer "
                 f"{splitted.n_buffer:,} ({splitted.buffer_weeks} weekly batches)",
        "cold_start": f"{splitted.cold_start['test_users_new_share']:.1%} of test users and "
                      f"{splitted.cold_start['test_ratings_new_user_share']:.1%} of test ratings "
                      f"have no train history",
        "train": trained if isinstance(trained, str) else
        f"hybrid NDCG@{cfg['train.k']} {trained.value('hybrid', 'ndcg', 'all'):.4f} vs recent "
        f"popularity {trained.value('popular_recent', 'ndcg', 'all'):.4f}; {trained.gate.reason}",
        "serve": f"{served['rows']:,} recommendations for {served['users']:,} users by "
                 f"{served['model']}, run {served['latest_run_date']}"
                 + (" (Delta and PostgreSQL)" if cfg["recommend.publish_postgres"] else " (Delta)"),
        "lake": str(cfg.path("lake")),
    }
    print("\nmovierec pipeline summary")
    for key, value in summary.items():
        print(f"  {key:<11} {value}")
    return summary
