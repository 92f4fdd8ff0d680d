"""The champion gate's evidence: challenger and champion scored on ratings neither has seen.

Prequential, on the newest window of arrivals (run dates in (cutoff, D], cutoff = D minus
train.gate_window_days). The challenger is tonight's recipe (the served model, the models it
requires, tonight's parameters) fitted on the ratings known as of the cutoff; the champion's
numbers come from the lists it actually served on the last run date at or before the cutoff
(`recommendations`, or `popular_movies` for a user it had no list for). Both lists exclude what
was known at the cutoff, and both are scored per user on the window's relevant ratings; the
decision is gate.decide_paired's paired bootstrap. The model then registered is the same recipe
fitted on everything known tonight: the gate judges the recipe on data it could not have seen.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from movierec.core import delta_io, tables as t
from movierec.core.config import Config
from movierec.core.logs import stage
from movierec.data.known import arrivals, known_ratings
from movierec.model import catalog
from movierec.model.base import Model, seen_pairs
from movierec.model.gate import PairedVerdict, decide_paired
from movierec.model.metrics import per_user_scores

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Window:
    cutoff: str       # the challenger learns ratings known as of this date, and nothing later
    end: str          # the run date: the window holds arrivals in (cutoff, end]

    def describe(self) -> str:
        return f"arrivals after {self.cutoff} up to {self.end}"


def window_for(run_date: str, days: int) -> Window:
    return Window((date.fromisoformat(run_date) - timedelta(days=days)).isoformat(), run_date)


def last_run(spark: SparkSession, lake, on_or_before: str) -> date | None:
    """The newest run date in recommendations at or before `on_or_before`."""
    if not delta_io.exists(spark, lake, t.RECOMMENDATIONS):
        return None
    return (delta_io.read(spark, lake, t.RECOMMENDATIONS)
            .where(F.col(t.RUN_DATE) <= F.lit(on_or_before).cast("date"))
            .agg(F.max(t.RUN_DATE)).first()[0])


def lists_served(spark: SparkSession, lake, on_or_before: str, users: DataFrame
                 ) -> tuple[date | None, set[str], DataFrame | None]:
    """(run date, model versions, lists) of the last run at or before `on_or_before`: what
    `users` were shown, their recommendations, or popular_movies for users the run had no list
    for. (None, set(), None) when no run is that old."""
    served_on = last_run(spark, lake, on_or_before)
    if served_on is None:
        return None, set(), None
    lists = delta_io.read(spark, lake, t.RECOMMENDATIONS).where(F.col(t.RUN_DATE) == F.lit(served_on))
    versions = {r[0] for r in lists.select(t.MODEL_VERSION).distinct().collect()}
    popular = (delta_io.read(spark, lake, t.POPULAR_MOVIES).where(F.col(t.RUN_DATE) == F.lit(served_on))
               .select(t.MOVIE_ID, t.RANK))
    mine = lists.select(t.USER_ID, t.MOVIE_ID, t.RANK).join(users, t.USER_ID, "left_semi")
    newcomers = users.join(mine.select(t.USER_ID).distinct(), t.USER_ID, "left_anti").crossJoin(popular)
    return served_on, versions, mine.unionByName(newcomers.select(t.USER_ID, t.MOVIE_ID, t.RANK))


def served_lists(spark: SparkSession, lake, on_or_before: str, version: str,
                 users: DataFrame) -> DataFrame | None:
    """lists_served's lists, if `version` served them; else None."""
    served_on, versions, lists = lists_served(spark, lake, on_or_before, users)
    if lists is not None and versions != {version}:
        log.info("gate: the lists of %s were served by %s, not champion v%s", served_on,
                 sorted(versions), version)
        return None
    return lists


def judge(spark: SparkSession, cfg: Config, models: Mapping[str, Model], params: Mapping[str, dict],
          run_date: str, champion_version: str) -> tuple[PairedVerdict, dict]:
    """The gate's verdict for tonight against `champion_version`, and what it was based on."""
    lake, s = cfg.path("lake"), cfg.train
    window = window_for(run_date, s.gate_window_days)
    held_out = arrivals(spark, lake, after=window.cutoff, until=window.end).select(
        t.USER_ID, t.MOVIE_ID, t.RATING, t.TS).cache()
    users = held_out.where(F.col(t.RATING) >= s.relevant_threshold).select(t.USER_ID).distinct()
    metric = s.primary_metric.value.rpartition("_")[0]
    evidence = {"training_cutoff": window.cutoff, "window_start_after": window.cutoff,
                "window_end": window.end, "window_ratings": held_out.count(),
                "window_users": users.count(), "metric": f"{metric}@{s.k}"}
    champion = served_lists(spark, lake, window.cutoff, champion_version, users)
    if champion is None or evidence["window_users"] < s.gate_min_users:
        why = (f"champion v{champion_version} served no lists on or before {window.cutoff}: "
               f"nothing honest to compare with, the champion stays") if champion is None else None
        verdict = decide_paired(np.zeros(evidence["window_users"]), np.zeros(evidence["window_users"]),
                                metric=metric, champion_version=champion_version,
                                min_users=s.gate_min_users)
        if why:
            verdict = PairedVerdict(False, float("nan"), float("nan"), why, evidence["window_users"])
        held_out.unpersist()
        return verdict, evidence
    with stage(log, f"gate: challenger fitted on the ratings known as of {window.cutoff}") as st:
        before = known_ratings(spark, lake, window.cutoff).cache()
        st.rows = before.count()
        served = s.served_model
        fitted = catalog.fit_all(catalog.with_requirements(dict(models), served), before, params)
        challenger = fitted[served].recommend(users, s.k, seen_pairs(before))
        scores = _paired(per_user_scores(challenger, held_out, s.k, metric,
                                         relevant_threshold=s.relevant_threshold),
                         per_user_scores(champion, held_out, s.k, metric,
                                         relevant_threshold=s.relevant_threshold))
        newest = before.agg(F.max(t.TS)).first()[0]
        for f in fitted.values():
            f.release()
        before.unpersist()
    evidence.update(training_ratings=st.rows, training_newest_ts=str(newest),
                    window_oldest_ts=str(held_out.agg(F.min(t.TS)).first()[0]))
    held_out.unpersist()
    verdict = decide_paired(scores[:, 0], scores[:, 1], metric=f"{metric}@{s.k}",
                            champion_version=champion_version, min_users=s.gate_min_users,
                            min_improvement=s.gate_min_improvement, resamples=s.gate_bootstrap,
                            seed=s.seed)
    return verdict, evidence


def _paired(challenger: DataFrame, champion: DataFrame) -> np.ndarray:
    """(n, 2): the two scores of each user, in user order."""
    both = (challenger.withColumnRenamed("score", "new")
            .join(champion.withColumnRenamed("score", "old"), t.USER_ID, "inner")
            .orderBy(t.USER_ID).select("new", "old").toPandas())
    return both.to_numpy(dtype=float).reshape(-1, 2)
