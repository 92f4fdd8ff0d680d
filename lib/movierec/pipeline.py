"""The main job end to end on one Spark session: find or fetch a release, ingest, split, train,
gate and publish; prints the summary `make run` shows."""

from __future__ import annotations

import logging

from pyspark.sql import SparkSession

from movierec.core import job_guard
from movierec.core.config import Config
from movierec.data import ingest, split
from movierec.data.release import resolve_source
from movierec.model import train
from movierec.serve import pg_settings, recommend

log = logging.getLogger(__name__)


@job_guard.job("pipeline")
def run(spark: SparkSession, cfg: Config, run_date: str | None = None) -> dict:
    if cfg.recommend.publish_postgres:
        # before any Spark work: a server that cannot start or be reached should not cost a run
        pg_settings.reachable(pg_settings.connection_settings(cfg))
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
        "cv": "none: training was skipped" if isinstance(trained, str) else trained.cv,
        "train": trained if isinstance(trained, str) else _train_line(trained, cfg),
        "serve": f"{served['rows']:,} recommendations for {served['users']:,} users by "
                 f"{served['model']}, run {served['latest_run_date']}"
                 + (" (Delta and PostgreSQL)" if cfg["recommend.publish_postgres"] else " (Delta)"),
        "lake": str(cfg.path("lake")),
    }
    print("\nmovierec pipeline summary")
    for key, value in summary.items():
        print(f"  {key:<11} {value}")
    return summary


def _train_line(trained, cfg: Config) -> str:
    served, baseline, k = cfg.train.served_model, cfg.train.baseline_model, cfg.train.k
    return (f"{served} NDCG@{k} {trained.value(served, 'ndcg', 'all'):.4f} vs {baseline} "
            f"{trained.value(baseline, 'ndcg', 'all'):.4f}; {trained.gate.reason}")
