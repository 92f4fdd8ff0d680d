"""recommendations_previous without reloading it: when PostgreSQL's live `recommendations` hold
exactly the lake's previous run, the swap renames them to `recommendations_previous`
(pg_publish's carry_over) instead of loading the same 14.8M rows (ML-25M) again.

"Exactly" is a fingerprint computed the same way by both engines over the rows themselves: the
count, the run dates and model versions, and a sum of a modular product of each row's user,
rank, movie and score (to 1e-4). Any other state (no live table, a publish that failed after the
lake's run, an edited row) loads the previous run from the lake as before.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from movierec.core import tables as t
from movierec.serve.pg_schema import PgTable
from movierec.serve.pg_settings import PgSettings, connect

log = logging.getLogger(__name__)

PRIME = 2_147_483_647   # every step stays below 2^62 in both engines' 64-bit integers
USER_MUL, MOVIE_OFFSET, SCORE_OFFSET = 1_000_003, 1_000_033, 1_000_037
SCORE_SCALE, SCORE_LIMIT = 10_000, 1_000_000_000   # scores beyond the limit (or NaN) count as 0

Fingerprint = tuple   # (rows, min run_date, max run_date, min version, max version, mix sum)


def fingerprint(lists: DataFrame) -> Fingerprint:
    """The fingerprint of served lists (serving_sql.SERVED_COLUMNS) in Spark."""
    c = lambda name: F.col(name).cast("long")  # noqa: E731
    score = F.col(t.SCORE).cast("double")
    scaled = (F.when(score.isNull() | F.isnan(score) | (F.abs(score) > SCORE_LIMIT), F.lit(0))
              .otherwise(F.floor(score * SCORE_SCALE)).cast("long"))
    # products, not sums, of the fields: two rows trading movies or scores change the total
    slot = (c(t.USER_ID) * USER_MUL + c(t.RANK)) % PRIME
    listed = slot * (c(t.MOVIE_ID) + MOVIE_OFFSET) % PRIME
    mix = listed * (((scaled % PRIME) + PRIME) % PRIME + SCORE_OFFSET) % PRIME
    row = lists.agg(F.count(F.lit(1)), F.min(t.RUN_DATE), F.max(t.RUN_DATE), F.min(t.MODEL_VERSION),
                    F.max(t.MODEL_VERSION), F.sum(mix)).first()
    return _normal(tuple(row))


# The same expression as fingerprint()'s, term for term; {table} is left for psycopg to quote.
_LIVE_SQL = f"""
SELECT count(*), min(run_date), max(run_date), min(model_version), max(model_version),
       sum((user_id::bigint * {USER_MUL} + rank) % {PRIME} * (movie_id::bigint + {MOVIE_OFFSET}) % {PRIME}
           * ((CASE WHEN score IS NULL OR score = 'NaN' OR abs(score) > {SCORE_LIMIT} THEN 0
                    ELSE floor(score::float8 * {SCORE_SCALE})::bigint END % {PRIME} + {PRIME}) % {PRIME}
              + {SCORE_OFFSET}) % {PRIME})
FROM {{table}}"""


def live_fingerprint(settings: PgSettings, table: str) -> Fingerprint | None:
    """The same fingerprint over PostgreSQL's live table; None when there is no such table."""
    query = sql.SQL(_LIVE_SQL).format(table=sql.Identifier(table))
    with connect(settings) as conn:
        try:
            return _normal(conn.execute(query).fetchone())
        except psycopg.errors.UndefinedTable:
            return None


def live_holds(settings: PgSettings, live: PgTable, lists: DataFrame) -> bool:
    """Whether PostgreSQL's live table holds exactly `lists` (no Spark job when it is absent)."""
    have = live_fingerprint(settings, live.name)
    if have is None:
        log.info("previous run: no live %s to carry over: it is loaded from the lake", live.name)
        return False
    want = fingerprint(lists)
    log.info("previous run: %s rows in the lake, the live %s %s", f"{want[0]:,}", live.name,
             "hold the same rows" if want == have else f"hold others ({have[0]:,} rows): it is loaded again")
    return want == have


def _normal(row) -> Fingerprint:
    *head, mix = row
    return (int(head[0]), *head[1:], int(mix or 0))
