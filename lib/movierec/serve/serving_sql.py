"""The relations analysts query (docs/queries.sql), built once for both engines.

PostgreSQL gets them as tables at publish time; Spark SQL gets the same relations as temporary
views over the Delta lake, so every cookbook query runs unchanged on either.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from movierec.core import delta_io, tables as t
from movierec.data.known import known_ratings

GENRE = "genre"
PREVIOUS = "recommendations_previous"
MOVIE_GENRES = "movie_genres"
USER_GENRES = "user_genres"
SERVED_COLUMNS = [t.USER_ID, t.RANK, t.MOVIE_ID, t.SCORE, t.MODEL_VERSION, t.RUN_DATE]


def served(recs: DataFrame) -> DataFrame:
    return recs.select(*SERVED_COLUMNS)


def movie_genres(movies: DataFrame) -> DataFrame:
    return movies.select(t.MOVIE_ID, F.explode(t.GENRES).alias(GENRE))


def user_genres(train: DataFrame, movies: DataFrame) -> DataFrame:
    """Train ratings per (user, genre): the history side of a list's genre mix."""
    return (train.join(movie_genres(movies), t.MOVIE_ID, "inner")
            .groupBy(t.USER_ID, GENRE).agg(F.count(F.lit(1)).alias("ratings")))


def previous_run(runs: DataFrame, latest) -> DataFrame:
    """The newest run before `latest` (empty when there is none)."""
    before = runs.where(F.col(t.RUN_DATE) < F.lit(latest))
    newest_before = before.agg(F.max(t.RUN_DATE)).first()[0]
    return before.where(F.col(t.RUN_DATE) == F.lit(newest_before)) if newest_before else before


def serving_relations(spark: SparkSession, lake) -> dict[str, DataFrame]:
    """Every relation of docs/queries.sql, by name, from the lake's newest run."""
    latest = delta_io.read(spark, lake, t.RECOMMENDATIONS_LATEST)
    newest = latest.agg(F.max(t.RUN_DATE)).first()[0]
    movies = delta_io.read(spark, lake, t.MOVIES)
    popular = delta_io.read(spark, lake, t.POPULAR_MOVIES).where(F.col(t.RUN_DATE) == F.lit(newest))
    return {
        t.RECOMMENDATIONS: served(latest),
        PREVIOUS: served(previous_run(delta_io.read(spark, lake, t.RECOMMENDATIONS), newest)),
        t.POPULAR_MOVIES: popular.select(t.RANK, t.MOVIE_ID, t.SCORE, t.MODEL_VERSION, t.RUN_DATE),
        t.MOVIES: movies.select(t.MOVIE_ID, t.TITLE, t.YEAR, t.GENRES),
        MOVIE_GENRES: movie_genres(movies),
        USER_GENRES: user_genres(known_ratings(spark, lake, newest), movies),
    }


def register_views(spark: SparkSession, lake) -> None:
    """Temporary views with docs/queries.sql's relation names, over the lake's newest run."""
    for name, df in serving_relations(spark, lake).items():
        df.createOrReplaceTempView(name)


def load_queries(path: Path | str) -> dict[str, str]:
    """name -> SQL for each `-- name: x` section of a cookbook file, trailing ';' removed."""
    text = Path(path).read_text()
    parts = re.split(r"^-- name: *(\w+) *$", text, flags=re.M)
    return {name: body.strip().rstrip(";").strip() for name, body in zip(parts[1::2], parts[2::2])}


def to_psycopg(query: str) -> str:
    """`:name` parameters (Spark SQL, psql) as psycopg's `%(name)s`."""
    return re.sub(r"(?<!:):([a-z_]+)\b", r"%(\1)s", query.replace("%", "%%"))


def bind(query: str, args: dict) -> str:
    """`:name` parameters replaced by SQL literals, for Spark SQL.

    spark.sql(query, args=...) would be the natural call, but with Delta's SQL extension
    (delta-spark 4.4.0 on Spark 4.2) named parameters are left unbound (UNBOUND_SQL_PARAMETER),
    so the values are inlined here. Text goes in as hex bytes decoded as UTF-8: a quoted literal
    would have to get Spark's backslash escapes exactly right (doubling ' alone lets a value
    holding \\' close it), hex digits cannot close anything.
    """
    def literal(m: re.Match) -> str:
        if m.group(1) is None:   # a quoted string or a :: cast: left as written
            return m.group(0)
        name, value = m.group(1), args[m.group(1)]
        if isinstance(value, str):
            return f"decode(X'{value.encode().hex()}', 'UTF-8')"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"parameter {name}: {type(value).__name__} is not bindable")
        if not math.isfinite(value):
            raise ValueError(f"parameter {name}: {value} is not a SQL number")
        # a float keeps its type (0.1D, not the decimal 0.1); a sign in parentheses, so that
        # "3-:v" cannot become the comment "3--5"
        text = f"{value!r}D" if isinstance(value, float) else str(value)
        return f"({text})" if text.startswith("-") else text
    return re.sub(r"'(?:[^']|'')*'|::|:([a-z_]+)\b", literal, query)
