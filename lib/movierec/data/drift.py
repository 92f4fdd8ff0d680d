"""detect_drift: does the new slice of ratings look like the data the model was trained on?

Compares the run date's arrivals (ratings_increments) with the ratings known before them, one
drift_alerts row per metric (value, threshold, verdict), thresholds in config (drift.*):
- rating_psi: population stability index of the rating histogram (0.1 moderate, 0.25 large);
- rating_chi2_p: chi-square two-sample test of the histograms (a p-value below the threshold
  is drift; with big slices any tiny change is "significant", hence PSI as the effect size);
- ratings_per_user_ratio: the slice's mean ratings per active user against train's weekly one;
- new_user_share / new_movie_share: share of the slice's ratings by users / of movies train lacks;
- mean_rating_z: the slice's mean rating in standard deviations of train's recent weekly means
  (the most recent weeks that have ratings).
"""

from __future__ import annotations

import logging
import math
from datetime import date

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from scipy import stats

from movierec.core import delta_io, job_guard, tables as t
from movierec.core.config import Config
from movierec.core.errors import UserError
from movierec.data import known

log = logging.getLogger(__name__)
OK, DRIFT = "ok", "drift"   # verdicts of a drift_alerts row; DRIFT calls for retraining
EPS = 1e-4   # PSI's floor for empty bins: log(0) otherwise


class DriftError(UserError, RuntimeError):
    pass


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.maximum(expected / expected.sum(), EPS)
    a = np.maximum(actual / actual.sum(), EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def histograms(base: DataFrame, new: DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Counts per rating value, aligned on the values either side has."""
    def counts(df):
        return {r[0]: r[1] for r in df.groupBy(t.RATING).count().collect()}
    b, n = counts(base), counts(new)
    values = sorted(set(b) | set(n))
    return np.array([b.get(v, 0) for v in values], float), np.array([n.get(v, 0) for v in values], float)


def weekly(ratings: DataFrame, weeks: int) -> list[tuple[float, float]]:
    """(mean rating, ratings per active user) of the `weeks` most recent calendar weeks that
    have ratings: train ends where the test period starts, so "the last N weeks before the
    slice" may hold no train data at all."""
    week = F.floor(F.unix_seconds(t.TS) / (7 * 86_400)).alias("w")
    # the weeks first (a count per week needs no shuffle of users): only their ratings are
    # then grouped with a distinct count of users
    recent = [r[0] for r in ratings.select(week).distinct().orderBy(F.col("w").desc()).limit(weeks).collect()]
    rows = (ratings.where(week.isin(recent)).groupBy(week)
            .agg(F.avg(t.RATING).alias("mean"),
                 (F.count(F.lit(1)) / F.countDistinct(t.USER_ID)).alias("per_user"))
            .orderBy(F.col("w").desc()).collect())
    return [(r["mean"], r["per_user"]) for r in rows]


def unknown_share(base: DataFrame, new: DataFrame, column: str) -> float:
    """Share of the slice's ratings whose `column` (user or movie) base lacks. The slice's few
    ids are broadcast and base is streamed past them: no shuffle of base for a distinct."""
    ids = new.select(column).distinct()
    known_ids = base.select(column).join(F.broadcast(ids), column, "left_semi").distinct()
    return new.join(known_ids, column, "left_anti").count() / new.count()


def measure(base: DataFrame, new: DataFrame, cfg: Config) -> list[tuple[str, float, float, str]]:
    """(metric, value, threshold, detail) for every drift metric; value may be NaN."""
    hb, hn = histograms(base, new)
    _, p, _, _ = stats.chi2_contingency(np.vstack([hb, hn]) + 0.5)
    new_users, new_movies = unknown_share(base, new, t.USER_ID), unknown_share(base, new, t.MOVIE_ID)
    recent = weekly(base, cfg["drift.weeks"])
    means = np.array([m for m, _ in recent])
    per_user_train = float(np.mean([u for _, u in recent]))
    agg = new.agg(F.avg(t.RATING), F.count(F.lit(1)) / F.countDistinct(t.USER_ID)).first()
    mean_new, per_user_new = float(agg[0]), float(agg[1])
    spread = float(np.std(means, ddof=1)) if len(means) > 1 else float("nan")
    z = (mean_new - float(np.mean(means))) / spread if spread and spread > 0 else float("nan")
    return [
        ("rating_psi", psi(hb, hn), cfg["drift.psi_threshold"], f"{int(hn.sum())} new vs {int(hb.sum())} train ratings"),
        ("rating_chi2_p", float(p), cfg["drift.p_value_threshold"], "chi-square two-sample test of rating histograms"),
        ("ratings_per_user_ratio", per_user_new / per_user_train, cfg["drift.per_user_ratio_threshold"],
         f"{per_user_new:.2f} per active user vs {per_user_train:.2f} in train's last {len(recent)} weeks"),
        ("new_user_share", new_users, cfg["drift.new_user_share_threshold"], "share of the slice's ratings by users train lacks"),
        ("new_movie_share", new_movies, cfg["drift.new_movie_share_threshold"], "share of the slice's ratings of movies train lacks"),
        ("mean_rating_z", z, cfg["drift.mean_z_threshold"],
         f"slice mean {mean_new:.3f} vs weekly means {np.mean(means):.3f} ± {spread:.3f}"),
    ]


def verdict(metric: str, value: float, threshold: float) -> str:
    if math.isnan(value):
        return OK   # not measurable (e.g. one week of history): no alarm on no evidence
    if metric == "rating_chi2_p":
        return DRIFT if value < threshold else OK
    if metric == "ratings_per_user_ratio":   # a ratio: too far either way
        return DRIFT if max(value, 1 / max(value, 1e-9)) > threshold else OK
    if metric == "mean_rating_z":
        return DRIFT if abs(value) > threshold else OK
    return DRIFT if value > threshold else OK


@job_guard.job("detect_drift")
def run(spark: SparkSession, cfg: Config, run_date: str | None = None) -> dict:
    run_date = run_date or date.today().isoformat()
    lake = cfg.path("lake")
    increments = delta_io.read(spark, lake, t.RATINGS_INCREMENTS)
    new = increments.where(F.col(t.RUN_DATE) == F.lit(run_date)).select(*t.SCHEMAS[t.RATINGS].names).cache()
    if new.limit(1).count() == 0:
        raise DriftError(f"no new ratings for {run_date} in ratings_increments: run `ingest_increment` "
                         f"for that date first (or the buffer is used up)")
    # what was known before tonight; cached: every metric reads it
    base = known.known_ratings(spark, lake, known.day_before(run_date)).cache()
    rows = [(date.fromisoformat(run_date), m, v, th, verdict(m, v, th), d) for m, v, th, d in measure(base, new, cfg)]
    base.unpersist()
    delta_io.overwrite(spark.createDataFrame(rows, t.SCHEMAS[t.DRIFT_ALERTS]), lake, t.DRIFT_ALERTS,
                       replace_where=f"{t.RUN_DATE} = DATE'{run_date}'")
    for _, m, v, th, verdict_, d in rows:
        log.info("drift %-24s %10.4f (threshold %g): %s  %s", m, v, th, verdict_.upper(), d)
    new.unpersist()
    drifted = [r[1] for r in rows if r[4] == DRIFT]
    return {"run_date": run_date, "metrics": len(rows), "drift": drifted}
