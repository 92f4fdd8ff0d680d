"""How good the served lists were: the lists live before tonight's ratings arrived, scored on
those ratings. The number an operator watches, one serving_metrics row per metric per night.

Live lists are the last run before tonight (recommendations, popular_movies for users it had no
list for); tonight's ratings are the arrivals after that run, up to tonight. Metrics at K over
the arriving users with a relevant rating: hit rate, precision, recall, NDCG; and, for users
the live run did not know, the share of their ratings that the fallback list had shown them.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from movierec.core import delta_io, tables as t
from movierec.data.known import arrivals
from movierec.model.metrics import ranking_metrics
from movierec.model.prequential import last_run, lists_served

log = logging.getLogger(__name__)
REPORTED = ("hit_rate", "precision", "recall", "ndcg", "users")
FALLBACK_COVERAGE = "new_user_fallback_coverage"


def score_live_lists(spark: SparkSession, lake, run_date: str, k: int,
                     relevant_threshold: float) -> pd.DataFrame | None:
    """The night's serving_metrics rows, or None when no earlier run or no arrival exists."""
    day_before = (date.fromisoformat(run_date) - timedelta(days=1)).isoformat()
    live_on = last_run(spark, lake, day_before)
    if live_on is None:
        return None
    arrived = arrivals(spark, lake, after=live_on, until=run_date).select(
        t.USER_ID, t.MOVIE_ID, t.RATING).cache()
    if arrived.limit(1).count() == 0:
        arrived.unpersist()
        return None
    users = arrived.select(t.USER_ID).distinct()
    _, versions, lists = lists_served(spark, lake, str(live_on), users)
    scores = ranking_metrics(lists, arrived, k, relevant_threshold=relevant_threshold)
    # every user known on live_on got a list that night: those without one are the newcomers
    listed = (delta_io.read(spark, lake, t.RECOMMENDATIONS).where(F.col(t.RUN_DATE) == F.lit(live_on))
              .select(t.USER_ID).distinct())
    newcomers = users.join(listed, t.USER_ID, "left_anti")
    theirs = arrived.join(newcomers, t.USER_ID, "left_semi")
    shown = theirs.join(lists.select(t.USER_ID, t.MOVIE_ID), [t.USER_ID, t.MOVIE_ID], "left_semi")
    n_new = theirs.count()
    rows = [(name, float(scores[name])) for name in REPORTED]
    rows.append((FALLBACK_COVERAGE, shown.count() / n_new if n_new else float("nan")))
    rows.append(("arrived_ratings", float(arrived.count())))
    arrived.unpersist()
    log.info("live lists of %s (model %s) on the %s arrivals after them: %s", live_on,
             ", ".join(sorted(versions)), run_date, {name: round(v, 4) for name, v in rows})
    return pd.DataFrame([{"run_date": date.fromisoformat(run_date), "live_run_date": live_on,
                          "metric": name, "k": k, "value": value} for name, value in rows])
