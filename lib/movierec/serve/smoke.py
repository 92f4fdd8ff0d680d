"""smoke_check: after a publish, ask the served tables what an application would ask.

Fails (one line naming the table and what is wrong) unless recommendations_latest holds the
run date's complete run, and PostgreSQL serves the same run with the same row count and a
10-row top-10 answer from the cookbook query.
"""

from __future__ import annotations

import logging
from datetime import date

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from movierec.core import delta_io, tables as t
from movierec.core.config import Config
from movierec.core.errors import UserError
from movierec.serve import pg_settings, serving_sql

log = logging.getLogger(__name__)


class SmokeError(UserError, RuntimeError):
    pass


def run(spark: SparkSession, cfg: Config, run_date: str | None = None) -> dict:
    run_date = run_date or date.today().isoformat()
    lake = cfg.path("lake")
    latest = delta_io.read(spark, lake, t.RECOMMENDATIONS_LATEST)
    row = latest.agg(F.count(F.lit(1)), F.max(t.RUN_DATE), F.min(t.RUN_DATE),
                     F.countDistinct(t.USER_ID)).first()
    rows, newest, oldest, users = row[0], str(row[1]), str(row[2]), row[3]
    if rows == 0 or newest != run_date or oldest != run_date:
        raise SmokeError(f"Delta recommendations_latest holds runs {oldest}..{newest} ({rows} rows), "
                         f"not the complete run of {run_date}")
    result = {"run_date": run_date, "delta_rows": rows, "users": users}
    if cfg["recommend.publish_postgres"]:
        result.update(_check_postgres(cfg, run_date, rows, latest.agg(F.min(t.USER_ID)).first()[0]))
    log.info("smoke check passed: %s", result)
    return result


def _check_postgres(cfg: Config, run_date: str, delta_rows: int, user: int) -> dict:
    settings = pg_settings.connection_settings(cfg)
    top10 = serving_sql.load_queries(cfg.root / "docs" / "queries.sql")["top10_for_user"]
    with pg_settings.connect(settings) as conn:
        n, newest = conn.execute("SELECT count(*), max(run_date) FROM recommendations").fetchone()
        answer = conn.execute(serving_sql.to_psycopg(top10), {"user_id": user}).fetchall()
    if str(newest) != run_date or n != delta_rows:
        raise SmokeError(f"PostgreSQL recommendations at {settings.masked()} serves run {newest} with "
                         f"{n} rows; Delta's run {run_date} has {delta_rows}")
    if len(answer) != min(10, cfg["recommend.k"]):
        raise SmokeError(f"PostgreSQL top-10 query for user {user} returned {len(answer)} rows")
    return {"postgres_rows": n, "top10_rows": len(answer)}
