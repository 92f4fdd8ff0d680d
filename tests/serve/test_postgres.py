"""Publishing to a real PostgreSQL (the embedded server of tests/pg_fixture.py)."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
import time

import pytest
from pyspark.sql import functions as F

from movierec.core.config import load_config
from movierec.serve import pg_carry_over, pg_publish, pg_schema, pg_settings as pgs
from movierec.serve.pg_settings import PgSettings, PublishError
from tests.helpers import pg_database

D1, D2, D3, D4 = (dt.date(2026, 1, d) for d in (1, 2, 3, 4))


@pytest.fixture(scope="module")
def pgdb(pg_settings) -> PgSettings:
    """This module's own database on the suite's server."""
    return pg_database(pg_settings, "publish_tests")
READ = "SELECT count(*), min(run_date), max(run_date) FROM recommendations"


def recs(spark, users: int, run_date: dt.date, k: int = 10):
    """users x k rows: ranks 1..k per user, all on one run_date."""
    return spark.range(users * k).select(
        (F.col("id") / k).cast("int").alias("user_id"),
        (F.col("id") % k + 1).cast("int").alias("rank"),
        ((F.col("id") * 7919) % 5000).cast("int").alias("movie_id"),
        (F.lit(1.0) / (F.col("id") % k + 1)).cast("float").alias("score"),
        F.lit("v1").alias("model_version"),
        F.lit(run_date).alias("run_date"))


def query(settings: PgSettings, sql: str, params=None) -> list[tuple]:
    with pgs.connect(settings) as conn:
        return conn.execute(sql, params).fetchall()


def f32(x):
    """PostgreSQL prints a real in its shortest form (0.1), Spark hands over its float32 value
    as a double (0.10000000149...): compare them as float32."""
    return None if x is None else struct.unpack("f", struct.pack("f", x))[0]


def leftovers(settings: PgSettings) -> list[tuple]:
    return query(settings, "SELECT tablename FROM pg_tables WHERE tablename LIKE '%\\_\\_%'")


@pytest.mark.parametrize("method", pg_publish.METHODS)
def test_publish_reads_back_the_same_rows(spark, pgdb, method):
    rows = [(1, 1, 10, 0.1, 'v"1,\n', D1), (1, 2, 20, None, "", D1), (2, 1, 10, 2.5e-7, "émoji 🎬", D1)]
    df = spark.createDataFrame(rows, "user_id int, rank int, movie_id int, score float, "
                                     "model_version string, run_date date")
    assert pg_publish.publish_table(df, pg_schema.RECOMMENDATIONS, pgdb, method=method) == 3
    got = query(pgdb, "SELECT * FROM recommendations ORDER BY user_id, rank")
    want = sorted(tuple(r) for r in df.collect())
    assert [(*r[:3], f32(r[3]), *r[4:]) for r in got] == [(*r[:3], f32(r[3]), *r[4:]) for r in want]

    movies = spark.createDataFrame(
        [(1, 'Toy "Story", the {1995}', 1995, ["Animation", "Children's"]),
         (2, "Back\\slash", None, []), (3, "", 2001, ['a"b', "c,d", "{e}", "back\\slash", "NULL"])],
        "movie_id int, title string, year int, genres array<string>")
    assert pg_publish.publish_table(movies, pg_schema.MOVIES, pgdb, method=method) == 3
    assert query(pgdb, "SELECT * FROM movies ORDER BY movie_id") == \
        sorted(tuple(r) for r in movies.collect())


def test_republish_replaces_and_leaves_nothing_behind(spark, pgdb):
    pg_publish.publish_table(recs(spark, 3, D1), pg_schema.RECOMMENDATIONS, pgdb)
    pg_publish.publish_table(recs(spark, 2, D2).withColumn("extra", F.lit(1)), pg_schema.RECOMMENDATIONS, pgdb)
    assert query(pgdb, READ) == [(20, D2, D2)]
    assert leftovers(pgdb) == []
    indexes = query(pgdb, "SELECT indexname FROM pg_indexes WHERE tablename = 'recommendations'")
    assert sorted(indexes) == [("recommendations_movie_id_idx",), ("recommendations_pkey",)]


def test_popular_movies(spark, pgdb):
    popular = spark.createDataFrame([(1, 50, 9.5, "3", D1), (2, 7, 9.0, "3", D1)],
                                    "rank long, movie_id int, score double, model_version string, run_date date")
    assert pg_publish.publish_table(popular, pg_schema.POPULAR_MOVIES, pgdb) == 2
    assert query(pgdb, "SELECT rank, movie_id FROM popular_movies ORDER BY rank") == [(1, 50), (2, 7)]


def test_readers_see_the_old_or_the_new_table_never_a_partial_one(spark, pgdb):
    pg_publish.publish_table(recs(spark, 200, D1), pg_schema.RECOMMENDATIONS, pgdb)
    publishes = [(recs(spark, users, day), (users * 10, day, day))
                 for users, day in [(300, D2), (400, D3), (500, D4)]]
    allowed = {(2000, D1, D1)} | {want for _, want in publishes}
    seen, errors, stop = [], [], threading.Event()

    def reader():
        try:
            with pgs.connect(pgdb) as conn:   # autocommit: one snapshot per query
                while not stop.is_set():
                    seen.append(conn.execute(READ).fetchone())
        except Exception as e:   # noqa: BLE001 - any failure is the finding
            errors.append(repr(e))

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for df, _ in publishes:
            pg_publish.publish_table(df, pg_schema.RECOMMENDATIONS, pgdb)
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert errors == []
    assert set(seen) <= allowed, set(seen) - allowed
    assert len(set(seen)) >= 3 and (5000, D4, D4) in seen   # the readers ran across the swaps
    print(f"{len(seen)} PostgreSQL reads during 3 swaps, {len(set(seen))} whole tables seen, no partial one")


def test_a_failed_publish_keeps_the_previous_table(spark, pgdb):
    pg_publish.publish_table(recs(spark, 3, D1), pg_schema.RECOMMENDATIONS, pgdb)
    new = recs(spark, 4, D2)
    with pytest.raises(PublishError, match="duplicate primary key"):
        pg_publish.publish_table(new.union(new.limit(1)), pg_schema.RECOMMENDATIONS, pgdb)
    assert query(pgdb, READ) == [(30, D1, D1)]
    assert leftovers(pgdb) == []
    assert pg_publish.publish_table(new, pg_schema.RECOMMENDATIONS, pgdb) == 40


def test_tables_published_together_change_together_or_not_at_all(spark, pgdb):
    """recommend publishes six tables; they swapped one transaction each, so a failure in the
    second served tonight's popular list beside last night's recommendations."""
    popular = lambda n, day: spark.range(1, n + 1).select(   # noqa: E731
        F.col("id").cast("int").alias("rank"), F.col("id").cast("int").alias("movie_id"),
        F.lit(1.0).cast("float").alias("score"), F.lit("v1").alias("model_version"), F.lit(day).alias("run_date"))
    both = lambda pop, rec: [(pop, pg_schema.POPULAR_MOVIES), (rec, pg_schema.RECOMMENDATIONS)]  # noqa: E731
    assert pg_publish.publish_many(both(popular(2, D1), recs(spark, 3, D1)), pgdb) == {
        "popular_movies": 2, "recommendations": 30}
    broken = recs(spark, 4, D2)
    with pytest.raises(PublishError, match="duplicate primary key"):
        pg_publish.publish_many(both(popular(5, D2), broken.union(broken.limit(1))), pgdb)
    assert query(pgdb, "SELECT count(*), max(run_date) FROM popular_movies") == [(2, D1)]
    assert query(pgdb, READ) == [(30, D1, D1)]
    assert leftovers(pgdb) == []


def test_a_carried_over_table_is_the_live_one_renamed_in_the_same_swap(spark, pgdb):
    """recommendations_previous as last night's live lists, renamed rather than reloaded: the
    rows, keys and indexes of each table are what a load would give, and a failure keeps both."""
    live, previous = pg_schema.RECOMMENDATIONS, pg_schema.RECOMMENDATIONS_PREVIOUS
    pg_publish.publish_table(recs(spark, 3, D1), live, pgdb)
    d1 = query(pgdb, "SELECT * FROM recommendations ORDER BY 1, 2")
    carry = [(live, previous)]
    assert pg_publish.publish_many([(recs(spark, 4, D2), live)], pgdb, carry_over=carry) == {"recommendations": 40}
    assert query(pgdb, "SELECT * FROM recommendations_previous ORDER BY 1, 2") == d1
    assert query(pgdb, READ) == [(40, D2, D2)]
    broken = recs(spark, 5, D3)
    with pytest.raises(PublishError, match="duplicate primary key"):
        pg_publish.publish_many([(broken.union(broken.limit(1)), live)], pgdb, carry_over=carry)
    assert query(pgdb, "SELECT * FROM recommendations_previous ORDER BY 1, 2") == d1
    assert query(pgdb, READ) == [(40, D2, D2)]
    pg_publish.publish_many([(recs(spark, 5, D3), live)], pgdb, carry_over=carry)
    assert query(pgdb, "SELECT count(*), min(run_date), max(run_date) FROM recommendations_previous") == [(40, D2, D2)]
    assert query(pgdb, READ) == [(50, D3, D3)]
    indexes = query(pgdb, "SELECT tablename, indexname FROM pg_indexes WHERE tablename LIKE 'recommendations%' ORDER BY 1, 2")
    assert indexes == [("recommendations", "recommendations_movie_id_idx"), ("recommendations", "recommendations_pkey"),
                       ("recommendations_previous", "recommendations_previous_pkey")]
    assert leftovers(pgdb) == []
    with pytest.raises(ValueError, match="must be published in the same swap"):
        pg_publish.publish_many([(recs(spark, 1, D4), previous)], pgdb, carry_over=carry)


def test_the_fingerprint_is_the_same_in_spark_and_postgres_and_moves_with_any_one_field(spark, pgdb):
    rows = [(1, 1, 10, 0.5, "7", D1), (1, 2, 20, -3.25, "7", D1), (2, 1, 20, None, "7", D1),
            (2, 2, 10, float("nan"), "7", D1), (3, 1, 2**31 - 1, 1e12, "7", D1), (2**31 - 1, 1, 1, 1e-4, "7", D1)]
    schema = "user_id int, rank int, movie_id int, score float, model_version string, run_date date"
    lists = lambda rs: spark.createDataFrame(rs, schema)  # noqa: E731
    pg_publish.publish_table(lists(rows), pg_schema.RECOMMENDATIONS, pgdb)
    same = pg_carry_over.fingerprint(lists(rows))
    assert pg_carry_over.live_fingerprint(pgdb, "recommendations") == same
    assert pg_carry_over.live_fingerprint(pgdb, "no_such_table") is None
    assert pg_carry_over.fingerprint(lists([])) == (0, None, None, None, None, 0)
    changed = [  # each a one-field edit, or two rows trading a field
        [(1, 1, 11, 0.5, "7", D1), *rows[1:]], [(1, 1, 10, 0.5001, "7", D1), *rows[1:]],
        [(1, 3, 10, 0.5, "7", D1), *rows[1:]], [(9, 1, 10, 0.5, "7", D1), *rows[1:]],
        [(1, 1, 10, 0.5, "8", D1), *rows[1:]], [(1, 1, 10, 0.5, "7", D2), *rows[1:]],
        [(1, 1, 20, 0.5, "7", D1), (1, 2, 10, -3.25, "7", D1), *rows[2:]],
        [(1, 1, 10, -3.25, "7", D1), (1, 2, 20, 0.5, "7", D1), *rows[2:]], rows[1:]]
    prints = [pg_carry_over.fingerprint(lists(rs)) for rs in changed]
    assert same not in prints and len(set(prints)) == len(prints)


KILLED_LOADER = """
import os, sys
from movierec.serve import pg_publish, pg_schema
import psycopg
with psycopg.connect(os.environ["DSN"], autocommit=True) as conn:
    pg_publish._create_staging(conn, pg_schema.RECOMMENDATIONS)
with psycopg.connect(os.environ["DSN"]) as conn, conn.cursor().copy(
        'COPY recommendations__staging FROM STDIN') as copy:
    for i in range(10**8):
        copy.write_row((i, 1, 1, 0.5, "dead", "2026-01-09"))
        if i == 10_000:
            print("loading", flush=True)
"""


def test_a_publish_killed_while_loading_keeps_the_previous_table(spark, pgdb):
    pg_publish.publish_table(recs(spark, 3, D1), pg_schema.RECOMMENDATIONS, pgdb)
    loader = subprocess.Popen([sys.executable, "-c", KILLED_LOADER], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "DSN": pgdb.dsn()})
    try:
        assert loader.stdout.readline().strip() == "loading"
        deadline = time.monotonic() + 10
        while not query(pgdb, "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'COPY rec%'"):
            assert time.monotonic() < deadline, "the loader never reached COPY"
            time.sleep(0.05)
    finally:
        loader.send_signal(signal.SIGKILL)
        loader.wait(10)
    assert query(pgdb, READ) == [(30, D1, D1)]
    assert leftovers(pgdb) == [("recommendations__staging",)]
    assert pg_publish.publish_table(recs(spark, 4, D2), pg_schema.RECOMMENDATIONS, pgdb) == 40
    assert query(pgdb, READ) == [(40, D2, D2)]
    assert leftovers(pgdb) == []


def test_the_password_is_never_shown_or_logged(spark, pgdb, caplog, monkeypatch):
    pg_settings = pgdb
    password = pg_settings.secret()
    assert len(password) >= 20
    for text in (repr(pg_settings), str(pg_settings), f"{pg_settings}", pg_settings.masked(),
                 pg_settings.jdbc_url(), repr([pg_settings])):
        assert password not in text
    caplog.set_level(logging.DEBUG)
    for method in pg_publish.METHODS:
        pg_publish.publish_table(recs(spark, 2, D1), pg_schema.RECOMMENDATIONS, pg_settings, method=method)
    monkeypatch.setenv(pgs.ENV_URL, "postgresql://app:s3cr%40t-pw@db.example:6543/serving")
    from_url = pgs.connection_settings(load_config("test"))
    assert (from_url.host, from_url.port, from_url.database, from_url.user, from_url.secret()) == \
        ("db.example", 6543, "serving", "app", "s3cr@t-pw")
    assert "s3cr" not in repr(from_url.password) and "s3cr" not in f"{from_url}"
    wrong = PgSettings(pg_settings.host, pg_settings.port, pg_settings.database, "movierec",
                       "wrong-" + password)
    with pytest.raises(PublishError) as failed:
        pg_publish.publish_table(recs(spark, 2, D1), pg_schema.RECOMMENDATIONS, wrong)
    assert password not in str(failed.value) and "***" in str(failed.value)
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "movierec.serve.pg_publish" in caplog.text and "***" in caplog.text
    for secret in (password, "s3cr@t-pw", "s3cr%40t-pw"):
        assert secret not in logged


def test_settings_from_the_environment_or_the_embedded_server(pg_env, pg_dir, monkeypatch):
    cfg = load_config("test")
    assert pgs.connection_settings(cfg) == pg_env
    for name in (pgs.ENV_HOST, pgs.ENV_PORT, pgs.ENV_DB, pgs.ENV_USER,
                 pgs.ENV_PASSWORD):
        monkeypatch.delenv(name)
    # no MOVIEREC_PG_*: the embedded server of postgres.data_dir (here the suite's own)
    assert pgs.connection_settings(cfg.with_overrides({"postgres.data_dir": str(pg_dir)})) == pg_env
    monkeypatch.setenv(pgs.ENV_PASSWORD, "x")
    with pytest.raises(pgs.UserError, match="MOVIEREC_PG_HOST"):
        pgs.connection_settings(cfg)
