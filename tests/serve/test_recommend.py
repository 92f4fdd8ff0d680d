"""recommend end to end, on what the pipeline run published (tests/background.py): the champion
trained on ml-latest-small and its lists of DAY1, in Delta and in PostgreSQL. The last tests
here write more runs into a copy of that lake (Delta only). (What the nightly DAG publishes the
next night: tests/e2e/test_dag_run.py.)"""

from __future__ import annotations

import json
import shutil
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from mlflow import MlflowClient
from pyspark.sql import functions as F

from movierec.core import delta_io, job_guard, tables as t
from movierec.core.config import load_config
from movierec.data.known import known_ratings, record_arrivals
from movierec.serve import pg_publish, pg_settings as pgs, recommend, serving_sql
from tests.helpers import K, PIPELINE_DATE as DAY1, copy_lake, pg_database
from tests.pg_fixture import point_jobs_at

USERS_DAY1 = 563  # users with a train or test rating in the real ml-latest-small split
NIGHT = "2026-11-25"   # a night after DAY1 with one newcomer and one known user's new rating
NIGHT2 = "2026-11-26"  # the night after, which dies twice before its rerun


@pytest.fixture(scope="module")
def served(spark, pipeline_run, tmp_path_factory):
    """(config of a copy of the pipeline's lake, PostgreSQL settings it was published with,
    the hybrid's parameters, the pipeline's rows of DAY1)."""
    lake = copy_lake(pipeline_run.lake, tmp_path_factory.mktemp("recommend") / "lake")
    cfg = pipeline_run.cfg.with_overrides({"lake": str(lake), "recommend.publish_postgres": False})
    client = MlflowClient(tracking_uri=cfg.mlflow.tracking_uri, registry_uri=cfg.mlflow.tracking_uri)
    champion = client.get_model_version_by_alias(cfg.mlflow.model_name, "champion")
    spec = client.download_artifacts(champion.run_id, "ranker/hybrid.json",
                                     str(tmp_path_factory.mktemp("champion")))
    params = json.loads(Path(spec).read_text())
    rows_day1 = _rows(delta_io.read(spark, pipeline_run.lake, t.RECOMMENDATIONS))
    return cfg, pipeline_run.pg, params, rows_day1


def _rows(df):
    return sorted(tuple(r) for r in df.select(t.USER_ID, t.RANK, t.MOVIE_ID, t.SCORE, t.SOURCE).collect())


def test_every_known_user_gets_k_unrated_movies_ranked_1_to_k(spark, served):
    cfg, *_ = served
    lake = cfg.path("lake")
    latest = delta_io.read(spark, lake, t.RECOMMENDATIONS_LATEST)
    known = known_ratings(spark, lake, DAY1)
    n_users = known.select(t.USER_ID).distinct().count()
    per_user = latest.groupBy(t.USER_ID).agg(F.count(F.lit(1)).alias("n"),
                                             F.countDistinct(t.MOVIE_ID).alias("movies"),
                                             F.collect_set(t.RANK).alias("ranks"))
    assert per_user.count() == n_users == USERS_DAY1
    assert per_user.where((F.col("n") != K) | (F.col("movies") != K)).count() == 0
    assert per_user.where(F.size(F.array_except("ranks", F.sequence(F.lit(1), F.lit(K)))) > 0).count() == 0
    assert latest.join(known, [t.USER_ID, t.MOVIE_ID], "left_semi").count() == 0
    assert {str(r[0]) for r in latest.select(t.RUN_DATE).distinct().collect()} == {DAY1}


def test_postgres_holds_the_same_rows_as_delta(spark, served):
    cfg, pg, *_ = served
    lake = cfg.path("lake")
    delta = sorted((r.user_id, r.rank, r.movie_id, r.model_version, str(r.run_date)) for r in
                   delta_io.read(spark, lake, t.RECOMMENDATIONS_LATEST).collect())
    with pgs.connect(pg) as conn:
        served_rows = sorted((u, r, m, v, str(d)) for u, r, m, v, d in conn.execute(
            "SELECT user_id, rank, movie_id, model_version, run_date FROM recommendations").fetchall())
        previous = conn.execute("SELECT DISTINCT run_date FROM recommendations_previous").fetchall()
    assert served_rows == delta and len(served_rows) == USERS_DAY1 * K
    assert previous == []   # the first run: nothing served before it


def test_cookbook_queries_answer_the_same_on_postgres_and_spark(spark, served):
    cfg, pg, *_ = served
    serving_sql.register_views(spark, cfg.path("lake"))
    queries = serving_sql.load_queries(cfg.root / "docs" / "queries.sql")
    assert set(queries) >= {"top10_for_user", "users_for_movie", "coverage", "genre_mix",
                            "changes_between_runs", "new_user_list"}
    user = delta_io.read(spark, cfg.path("lake"), t.RATINGS_TRAIN).agg(F.min(t.USER_ID)).first()[0]
    movie = (delta_io.read(spark, cfg.path("lake"), t.RECOMMENDATIONS_LATEST)
             .where(F.col(t.RANK) == 1).groupBy(t.MOVIE_ID).count().orderBy(F.desc("count")).first()[0])
    args = {"user_id": user, "movie_id": movie}
    with pgs.connect(pg) as conn:
        for name, query in queries.items():
            on_spark = [_plain(r) for r in spark.sql(serving_sql.bind(query, args)).collect()]
            on_pg = [_plain(r) for r in conn.execute(serving_sql.to_psycopg(query), args).fetchall()]
            assert on_pg == on_spark, name
            assert on_spark, f"{name} answered nothing"


def _plain(row) -> tuple:
    """Engine-neutral values: floats to 4 places (float4 vs float8), decimals as floats."""
    out = []
    for v in row:
        if isinstance(v, (float, Decimal)):
            v = round(float(v), 4)
        out.append(v)
    return tuple(out)


def test_thin_users_get_the_trending_list_minus_what_they_saw(spark, served):
    cfg, _, params, _ = served
    lake = cfg.path("lake")
    train = known_ratings(spark, lake, DAY1)   # the history the served lists were built from
    min_history = params["min_history"]
    counts = {r[0]: r[1] for r in train.groupBy(t.USER_ID).count().collect()}
    latest = delta_io.read(spark, lake, t.RECOMMENDATIONS_LATEST).toPandas()
    popular = delta_io.read(spark, lake, t.POPULAR_MOVIES).where(F.col(t.RUN_DATE) == DAY1).toPandas()
    trending = list(popular.sort_values(t.RANK)[t.MOVIE_ID])
    assert len(trending) == K and list(popular.sort_values(t.RANK)[t.RANK]) == list(range(1, K + 1))
    by_source = latest.groupby(t.USER_ID)[t.SOURCE].agg(set)
    thin = [u for u, n in counts.items() if n < min_history]
    trusted = [u for u, sources in by_source.items() if "model" in sources]
    assert trusted and all(counts[u] >= min_history for u in trusted)
    assert all(by_source[u] == {"fallback"} for u in thin)
    fallback_only = [u for u in counts if by_source[u] == {"fallback"}]
    assert fallback_only   # on ml-latest-small's DAY1: 1 of the 563 users
    for user in fallback_only[:20]:
        seen = {r[0] for r in train.where(F.col(t.USER_ID) == user).select(t.MOVIE_ID).collect()}
        mine = list(latest[latest.user_id == user].sort_values(t.RANK)[t.MOVIE_ID])
        # the fallback list is trending order minus seen; its head must match popular_movies
        expected_head = [m for m in trending if m not in seen][:len(mine)]
        assert mine[:len(expected_head)] == expected_head


def test_a_newcomer_tonight_gets_a_personal_list_without_a_refit_and_old_runs_expire(spark, served):
    """A night after DAY1 on the module's lake: a user whose first ratings arrived tonight and
    a known user who rated one more movie are folded in; runs past the retention are deleted."""
    cfg, _, params, _ = served
    lake = cfg.path("lake")
    newcomer = 1_000_001
    known_day1 = known_ratings(spark, lake, DAY1)
    popular = [r[0] for r in known_day1.groupBy(t.MOVIE_ID).count().orderBy(F.desc("count"), t.MOVIE_ID)
               .limit(max(25, params["min_history"])).collect()]
    old_user = known_day1.agg(F.min(t.USER_ID)).first()[0]
    new_movie = (known_day1.select(t.MOVIE_ID).distinct()   # one the model has factors for
                 .join(known_day1.where(F.col(t.USER_ID) == old_user), t.MOVIE_ID, "left_anti")
                 .agg(F.min(t.MOVIE_ID)).first()[0])
    when, night = datetime(2018, 10, 1, tzinfo=timezone.utc), date.fromisoformat(NIGHT)
    arrived = spark.createDataFrame(
        [(newcomer, m, 5.0, when, night, None, "test") for m in popular]
        + [(old_user, new_movie, 5.0, when, night, None, "test")], t.SCHEMAS[t.RATINGS_INCREMENTS])
    record_arrivals(spark, lake, arrived)
    # the champion v1 was fitted as of DAY1: both users are folded in (both ratings are liked,
    # and implicit ALS learns from liked ratings only), the newcomer as a new user
    result = recommend.run(spark, cfg.with_overrides({"recommend.retention_days": 3}), NIGHT)
    assert (result["changed"], result["new_users"], result["folded_in"]) == (2, 1, 2)
    assert result["users"] == USERS_DAY1 + 1 and result["latest_run_date"] == NIGHT
    latest = delta_io.read(spark, lake, t.RECOMMENDATIONS_LATEST)
    mine = latest.where(F.col(t.USER_ID) == newcomer).select(t.MOVIE_ID, t.SOURCE).collect()
    assert len(mine) == K and not {r[0] for r in mine} & set(popular)
    assert {r[1] for r in mine} == {"model"}           # personal, not the trending fallback
    assert latest.where((F.col(t.USER_ID) == old_user) & (F.col(t.MOVIE_ID) == new_movie)).count() == 0
    for table in (t.RECOMMENDATIONS, t.POPULAR_MOVIES):
        dates = {str(r[0]) for r in delta_io.read(spark, lake, table).select(t.RUN_DATE).distinct().collect()}
        assert dates == {NIGHT}  # DAY1 is more than 3 days older


def test_a_rerun_of_an_older_date_gives_its_rows_again_and_latest_keeps_the_newest_run(spark, served):
    """After the night above (which expired DAY1): DAY1 rerun, from the ratings known as of
    DAY1 only. (That a rerun of the newest date changes nothing: tests/e2e/test_dag_run.py.)"""
    cfg, _, _, rows_day1 = served
    lake = cfg.path("lake")
    assert len(rows_day1) == USERS_DAY1 * K
    again = recommend.run(spark, cfg, DAY1)
    assert again["latest_run_date"] == NIGHT and again["rows"] == USERS_DAY1 * K
    runs = delta_io.read(spark, lake, t.RECOMMENDATIONS)
    assert _rows(runs.where(F.col(t.RUN_DATE) == DAY1)) == rows_day1
    assert runs.count() == (USERS_DAY1 + USERS_DAY1 + 1) * K
    latest_dates = {str(r[0]) for r in delta_io.read(spark, lake, t.RECOMMENDATIONS_LATEST)
                    .select(t.RUN_DATE).distinct().collect()}
    assert latest_dates == {NIGHT}


def test_a_run_that_breaks_the_contract_is_never_written_so_never_latest(spark, served, monkeypatch):
    """After the runs above: a night whose lists leave a known user out fails its check; none of
    its rows reach the table, so publishing latest again (what any later rerun ends with) keeps
    the newest run that passed."""
    cfg, *_ = served
    lake, broken_night = cfg.path("lake"), "2026-11-27"
    real = recommend.recommendations

    def one_user_short(champion, known, k, run_date):
        lists = real(champion, known, k, run_date)
        return lists.where(F.col(t.USER_ID) != lists.agg(F.min(t.USER_ID)).first()[0])
    monkeypatch.setattr(recommend, "recommendations", one_user_short)
    with pytest.raises(recommend.RecommendError, match="1 known users without a list"):
        recommend.run(spark, cfg, broken_night)
    runs = delta_io.read(spark, lake, t.RECOMMENDATIONS)
    assert runs.where(F.col(t.RUN_DATE) == broken_night).count() == 0
    assert str(recommend._publish_latest(spark, lake, cfg.recommend.retention_days)) == NIGHT


KNOWN_BY_HAND = [(1, 10), (1, 11), (2, 10), (3, 12)]
LISTS_BY_HAND = [(1, 20, 1), (1, 21, 2), (2, 20, 1), (2, 11, 2), (3, 10, 1), (3, 20, 2)]


@pytest.mark.parametrize("change,breach", [
    ({(1, 21, 2): (1, 21, 3)}, "1 users with gaps or repeats in ranks"),
    ({(1, 21, 2): (1, 20, 2)}, "1 users with gaps or repeats in ranks"),
    ({(2, 11, 2): (2, 10, 2)}, "1 recommended movies the user already rated"),
    ({(3, 10, 1): None, (3, 20, 2): None}, "1 known users without a list"),
    ({(3, 20, 2): (4, 20, 1)}, "1 lists for users with no known rating"),
])
def test_the_contract_check_names_each_breach(spark, change, breach):
    known = spark.createDataFrame(KNOWN_BY_HAND, "user_id int, movie_id int")
    lists = lambda rows: spark.createDataFrame(rows, "user_id int, movie_id int, rank int")  # noqa: E731
    assert recommend.check(lists(LISTS_BY_HAND), known, 2) == (6, 3)
    assert recommend.check(lists(LISTS_BY_HAND), known, 3) == (6, 3)   # short lists only warn
    broken = [change.get(row, row) for row in LISTS_BY_HAND]
    with pytest.raises(recommend.RecommendError, match=f"contract: {breach}$"):
        recommend.check(lists([row for row in broken if row is not None]), known, 2)


def test_a_recommend_that_dies_in_its_write_or_before_the_postgres_swap_is_redone_by_its_rerun(
        spark, served, pg_settings, monkeypatch):
    """After the runs above (latest: NIGHT), NIGHT2 dies as its top-K write begins (beside the
    data files a write killed midway leaves), then after its Delta tables, before the PostgreSQL
    swap. Applications' readers of Delta and of PostgreSQL see one whole night each time, jobs
    refuse the half-written tables, and the rerun serves NIGHT2 everywhere, its rows once."""
    cfg, *_ = served
    lake = cfg.path("lake")
    pg = point_jobs_at(pg_database(pg_settings, "recommend_faults"), monkeypatch)
    recommend.publish_postgres(spark, lake, pg)   # PostgreSQL serves NIGHT, as NIGHT's run left it
    cfg = cfg.with_overrides({"recommend.publish_postgres": True})
    night = {NIGHT: (USERS_DAY1 + 1) * K}
    night2 = {NIGHT2: (USERS_DAY1 + 1) * K}   # no arrivals after NIGHT

    def served_nights() -> tuple[dict, dict]:
        latest = spark.read.format("delta").load(delta_io.table_path(lake, t.RECOMMENDATIONS_LATEST))
        with pgs.connect(pg) as conn:
            on_pg = conn.execute("SELECT run_date, count(*) FROM recommendations GROUP BY 1").fetchall()
        return ({str(d): n for d, n in latest.groupBy(t.RUN_DATE).count().collect()},
                {str(d): n for d, n in on_pg})

    def dies_at(point: str) -> None:
        monkeypatch.setenv(job_guard.FAULT_ENV, f"raise:{point}")
        with pytest.raises(job_guard.SimulatedCrash):
            recommend.run(spark, cfg, NIGHT2)
        with pytest.raises(job_guard.UnfinishedJobError, match="run `recommend` again"):
            delta_io.read(spark, lake, t.RECOMMENDATIONS_LATEST)

    dies_at(t.RECOMMENDATIONS)
    runs = Path(delta_io.table_path(lake, t.RECOMMENDATIONS))
    orphan = next(runs.rglob("*.parquet"))
    shutil.copy(orphan, orphan.with_name("part-99999-of-a-killed-write.snappy.parquet"))
    assert served_nights() == (night, night)
    dies_at(pg_publish.FAULT_BEFORE_SWAP)
    assert served_nights() == (night2, night)
    lists = [t.USER_ID, t.RANK, t.MOVIE_ID]   # not scores: a fold-in may differ in the last bits
    written = sorted(spark.read.format("delta").load(str(runs)).where(F.col(t.RUN_DATE) == NIGHT2)
                     .select(lists).collect())
    monkeypatch.delenv(job_guard.FAULT_ENV)
    assert recommend.run(spark, cfg, NIGHT2)["rows"] == night2[NIGHT2]
    assert served_nights() == (night2, night2)
    assert job_guard.unfinished(lake, "recommend") is None
    assert sorted(delta_io.read(spark, lake, t.RECOMMENDATIONS).where(F.col(t.RUN_DATE) == NIGHT2)
                  .select(lists).collect()) == written


def test_no_champion_is_a_clear_error(spark, served, tmp_path):
    cfg = served[0].with_overrides({"mlflow.tracking_uri": f"sqlite:///{tmp_path}/empty.db",
                                     "mlflow.artifact_root": str(tmp_path / "art")})
    with pytest.raises(recommend.RecommendError, match="run `train_als` first"):
        recommend.run(spark, cfg, DAY1)


def test_missing_training_data_names_the_job(spark, tmp_path):
    cfg = load_config("test", [f"lake={tmp_path / 'lake'}", "recommend.publish_postgres=false"])
    with pytest.raises(delta_io.MissingTableError, match="run `split` first"):
        recommend.run(spark, cfg, DAY1)
