"""The served PostgreSQL tables: the one place their DDL lives, with the checks that keep
every name safe to put in SQL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F, types as T

from movierec.serve.pg_settings import PublishError

@dataclass(frozen=True)
class PgTable:
    name: str
    columns: tuple[tuple[str, str], ...]      # (column, PostgreSQL type), in table order
    primary_key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()  # each: the columns of one btree index


RECOMMENDATIONS = PgTable(
    "recommendations",
    (("user_id", "integer"), ("rank", "integer"), ("movie_id", "integer NOT NULL"),
     ("score", "real"), ("model_version", "text NOT NULL"), ("run_date", "date NOT NULL")),
    primary_key=("user_id", "rank"),
    indexes=(("movie_id",),))
MOVIES = PgTable(
    "movies",
    (("movie_id", "integer"), ("title", "text NOT NULL"), ("year", "integer"),
     ("genres", "text[] NOT NULL")),
    primary_key=("movie_id",))
RECOMMENDATIONS_PREVIOUS = PgTable(   # the run before: "what changed for a user"
    "recommendations_previous", RECOMMENDATIONS.columns, RECOMMENDATIONS.primary_key)
POPULAR_MOVIES = PgTable(
    "popular_movies",
    (("rank", "integer"), ("movie_id", "integer NOT NULL"), ("score", "real"),
     ("model_version", "text NOT NULL"), ("run_date", "date NOT NULL")),
    primary_key=("rank",))
MOVIE_GENRES = PgTable(
    "movie_genres", (("movie_id", "integer"), ("genre", "text")), primary_key=("movie_id", "genre"),
    indexes=(("genre",),))
USER_GENRES = PgTable(   # train ratings per user and genre: the history side of a genre mix
    "user_genres", (("user_id", "integer"), ("genre", "text"), ("ratings", "bigint NOT NULL")),
    primary_key=("user_id", "genre"))

_SPARK_TYPES = {
    "smallint": T.ShortType(), "integer": T.IntegerType(), "bigint": T.LongType(),
    "real": T.FloatType(), "double precision": T.DoubleType(), "boolean": T.BooleanType(),
    "text": T.StringType(), "date": T.DateType(), "timestamptz": T.TimestampType(),
    "text[]": T.ArrayType(T.StringType()),
}
_NAME = re.compile(r"[a-z_][a-z0-9_]*")
STAGING, OLD = "__staging", "__old"


def spark_type(pg_type: str) -> T.DataType:
    base = re.sub(r"\s+not\s+null$", "", pg_type.strip(), flags=re.I).lower()
    if base not in _SPARK_TYPES:
        raise ValueError(f"no Spark type known for PostgreSQL type {pg_type!r}")
    return _SPARK_TYPES[base]


def index_name(table: str, columns: Sequence[str]) -> str:
    return f"{table}_{'_'.join(columns)}_idx"


def check_spec(spec: PgTable) -> None:
    names = [c for c, _ in spec.columns]
    for name in [spec.name + STAGING, *names, *(index_name(spec.name + STAGING, i) for i in spec.indexes)]:
        if not _NAME.fullmatch(name) or len(name) > 63:
            raise ValueError(f"{name!r} is not a plain lower-case PostgreSQL name of at most 63 chars")
    for cols in (spec.primary_key, *spec.indexes):
        if not cols or set(cols) - set(names):
            raise ValueError(f"{spec.name}: key/index columns {cols} must be among {names}")
    for _, pg_type in spec.columns:
        spark_type(pg_type)


def conformed(df: DataFrame, spec: PgTable) -> DataFrame:
    """The DDL as the schema contract: its columns, in its order, cast to its types."""
    missing = [c for c, _ in spec.columns if c not in df.columns]
    if missing:
        raise PublishError(f"cannot publish {spec.name}: the DataFrame lacks {missing} "
                           f"(has {df.columns})")
    return df.select([F.col(c).cast(spark_type(t)).alias(c) for c, t in spec.columns])



# What recommend publishes, in this order: recommendations last, so a reader never sees lists
# that name movies the movies table lacks.
SERVED_TABLES = (MOVIES, MOVIE_GENRES, USER_GENRES, POPULAR_MOVIES, RECOMMENDATIONS_PREVIOUS,
                 RECOMMENDATIONS)
