"""recommend end to end: the real champion trained on ml-latest-small, real Delta tables."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pyspark.sql import functions as F

from movierec import delta_io, postgres, recommend, serving_sql, tables as t
from movierec.config import load_config

K = 100
DAY1, DAY2 = "2026-11-22", "2026-11-23"
USERS = 453  # users with train ratings in the real ml-latest-small split


@pytest.fixture(scope="module")
def served(spark, trained, pg_settings):
    """Three runs published to Delta and the suite's PostgreSQL: DAY1, DAY1 again, DAY2."""
    cfg = trained[0].with_overrides({"recommend.k": K})
    lake = cfg.path("lake")
    with pytest.MonkeyPatch.context() as env:
        for name, value in postgres.env_for(pg_settings).items():
            env.setenv(name, value)
        first = recommend.run(spark, cfg, DAY1)
        rows_day1 = _rows(delta_io.read(spark, lake, t.RECOMMENDATIONS).where(F.col(t.RUN_DATE) == DAY1))
        again = recommend.run(spark, cfg, DAY1)
        rerun_rows = _rows(delta_io.read(spark, lake, t.RECOMMENDATIONS).where(F.col(t.RUN_DATE) == DAY1))
        second = recommend.run(spark, cfg, DAY2)
    return cfg.with_overrides({"recommend.publish_postgres": False}), first, again, second, rows_day1, rerun_rows


def _rows(df):
    return sorted(tuple(r) for r in df.select(t.USER_ID, t.RANK, t.MOVIE_ID, t.SCORE, t.SOURCE).collect())


def test_every_train_user_gets_k_unseen_movies_ranked_1_to_k(spark, served):
    cfg, *_ = served
    lake = cfg.path("lake")
    latest = delta_io.read(spark, lake, t.RECOMMENDATIONS_LATEST)
    train = delta_io.read(spark, lake, t.RATINGS_TRAIN)
    n_users = train.select(t.USER_ID).distinct().count()
    per_user = latest.groupBy(t.USER_ID).agg(F.count(F.lit(1)).alias("n"),
                                             F.countDistinct(t.MOVIE_ID).alias("movies"),
                                             F.collect_set(t.RANK).alias("ranks"))
    assert per_user.count() == n_users == USERS
    assert per_user.where((F.col("n") != K) | (F.col("movies") != K)).count() == 0
    assert per_user.where(F.size(F.array_except("ranks", F.sequence(F.lit(1), F.lit(K)))) > 0).count() == 0
    assert latest.join(train, [t.USER_ID, t.MOVIE_ID], "left_semi").count() == 0
    assert {str(r[0]) for r in latest.select(t.RUN_DATE).distinct().collect()} == {DAY2}


def test_postgres_holds_the_same_rows_as_delta(spark, served, pg_settings):
    cfg, *_ = served
    lake = cfg.path("lake")
    delta = sorted((r.user_id, r.rank, r.movie_id, r.model_version, str(r.run_date)) for r in
                   delta_io.read(spark, lake, t.RECOMMENDATIONS_LATEST).collect())
    with postgres.connect(pg_settings) as conn:
        pg = sorted((u, r, m, v, str(d)) for u, r, m, v, d in conn.execute(
            "SELECT user_id, rank, movie_id, model_version, run_date FROM recommendations").fetchall())
        previous = conn.execute("SELECT DISTINCT run_date FROM recommendations_previous").fetchall()
    assert pg == delta and len(pg) == USERS * K
    assert [str(d) for (d,) in previous] == [DAY1]


def test_cookbook_queries_answer_the_same_on_postgres_and_spark(spark, served, pg_settings):
    cfg, *_ = served
    serving_sql.register_views(spark, cfg.path("lake"))
    queries = serving_sql.load_queries(cfg.root / "docs" / "queries.sql")
    assert set(queries) >= {"top10_for_user", "users_for_movie", "coverage", "genre_mix",
                            "changes_between_runs", "new_user_list"}
    user = delta_io.read(spark, cfg.path("lake"), t.RATINGS_TRAIN).agg(F.min(t.USER_ID)).first()[0]
    movie = (delta_io.read(spark, cfg.path("lake"), t.RECOMMENDATIONS_LATEST)
             .where(F.col(t.RANK) == 1).groupBy(t.MOVIE_ID).count().orderBy(F.desc("count")).first()[0])
    args = {"user_id": user, "movie_id": movie}
    with postgres.connect(pg_settings) as conn:
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
    cfg, first, *_ = served
    lake = cfg.path("lake")
    train = delta_io.read(spark, lake, t.RATINGS_TRAIN)
    min_history = first["hybrid"]["min_history"]
    counts = {r[0]: r[1] for r in train.groupBy(t.USER_ID).count().collect()}
    latest = delta_io.read(spark, lake, t.RECOMMENDATIONS_LATEST).toPandas()
    popular = delta_io.read(spark, lake, t.POPULAR_MOVIES).where(F.col(t.RUN_DATE) == DAY2).toPandas()
    trending = list(popular.sort_values(t.RANK)[t.MOVIE_ID])
    assert len(trending) == K and list(popular.sort_values(t.RANK)[t.RANK]) == list(range(1, K + 1))
    by_source = latest.groupby(t.USER_ID)[t.SOURCE].agg(set)
    thin = [u for u, n in counts.items() if n < min_history]
    trusted = [u for u, sources in by_source.items() if "model" in sources]
    assert trusted and all(counts[u] >= min_history for u in trusted)
    assert all(by_source[u] == {"fallback"} for u in thin)
    for user in [u for u in counts if by_source[u] == {"fallback"}][:20]:
        seen = {r[0] for r in train.where(F.col(t.USER_ID) == user).select(t.MOVIE_ID).collect()}
        mine = list(latest[latest.user_id == user].sort_values(t.RANK)[t.MOVIE_ID])
        # the fallback list is trending order minus seen; its head must match popular_movies
        expected_head = [m for m in trending if m not in seen][:len(mine)]
        assert mine[:len(expected_head)] == expected_head


def test_rerun_of_a_date_replaces_it_and_latest_holds_the_newest_run(spark, served):
    cfg, first, again, second, rows_day1, rerun_rows = served
    lake = cfg.path("lake")
    assert rows_day1 == rerun_rows and len(rows_day1) == USERS * K
    dates = sorted(str(r[0]) for r in delta_io.read(spark, lake, t.RECOMMENDATIONS)
                   .select(t.RUN_DATE).distinct().collect())
    assert dates == [DAY1, DAY2]
    assert delta_io.read(spark, lake, t.RECOMMENDATIONS).count() == 2 * USERS * K
    assert first["rows"] == again["rows"] == second["rows"] == USERS * K
    assert second["latest_run_date"] == DAY2
    # an older date rerun later does not take `latest` back in time
    recommend.run(spark, cfg, DAY1)
    latest_dates = {str(r[0]) for r in delta_io.read(spark, lake, t.RECOMMENDATIONS_LATEST)
                    .select(t.RUN_DATE).distinct().collect()}
    assert latest_dates == {DAY2}


def test_runs_past_retention_are_deleted(spark, served):
    cfg, *_ = served
    lake = cfg.path("lake")
    recommend.run(spark, cfg.with_overrides({"recommend.retention_days": 3}), "2026-11-27")
    dates = sorted(str(r[0]) for r in delta_io.read(spark, lake, t.RECOMMENDATIONS)
                   .select(t.RUN_DATE).distinct().collect())
    assert dates == ["2026-11-27"]  # 11-22 and 11-23 are more than 3 days older
    popular_dates = {str(r[0]) for r in delta_io.read(spark, lake, t.POPULAR_MOVIES)
                     .select(t.RUN_DATE).distinct().collect()}
    assert popular_dates == {"2026-11-27"}


def test_no_champion_is_a_clear_error(spark, trained, tmp_path):
    cfg = trained[0].with_overrides({"mlflow.tracking_uri": f"sqlite:///{tmp_path}/empty.db",
                                     "mlflow.artifact_root": str(tmp_path / "art")})
    with pytest.raises(recommend.RecommendError, match="run `train_als` first"):
        recommend.run(spark, cfg, DAY1)


def test_missing_training_data_names_the_job(spark, tmp_path):
    cfg = load_config("test", [f"lake={tmp_path / 'lake'}"])
    with pytest.raises(delta_io.MissingTableError, match="run `split` first"):
        recommend.run(spark, cfg, DAY1)
