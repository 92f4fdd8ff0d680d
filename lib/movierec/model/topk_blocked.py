"""Top-K for every user when the item factors are too big to broadcast: items in slices.

`topk.top_k` sends every item factor to every Python worker, which then holds n_items x rank x 4
bytes of factors and a block_size x n_items x 4 byte score matrix: 15 MB and 1 GB for ML-25M's
59k movies at rank 64, but 1.5 GB of factors alone for 6M movies (docs/scaling.md). Here the
items are cut into `item_slices` by movie_id and the users into `user_chunks`; each (user chunk,
item slice) pair is scored in its own task of a cogroup, so neither side is broadcast and a task
holds one slice, one chunk and their score matrix. Each task keeps every user's k best in its
slice; a user's k best overall are among those, so ranking the candidates of all slices (score
descending, ties to the lower movie_id) gives exactly what top_k gives. The shuffle moves the user
factors item_slices times and the item factors user_chunks times.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from movierec.core import tables as t
from movierec.model.topk import (FALLBACK, FEATURES, MODEL, OUTPUT_SCHEMA, RANK, SCORE, hide_seen, top_k,
                                 top_of_block)

log = logging.getLogger(__name__)

# Item factors above this many MB are not broadcast: each Python worker would hold a copy beside
# its score block. A cluster sets it from its executors' Python memory (conf/cluster.yaml,
# docs/scaling.md); spark-submit --conf or the session's conf.
MAX_BROADCAST_CONF = "spark.movierec.topk.maxBroadcastMb"
MAX_BROADCAST_MB = 512

SLICE, CHUNK, BIAS, SEEN = "_item_slice", "_user_chunk", "_bias", "_seen"
_CANDIDATES = f"{t.USER_ID} int, {t.MOVIE_ID} int, {SCORE} float"


def _slice_of(column: str, n: int):
    return F.pmod(F.xxhash64(F.col(column)), F.lit(n)).cast("int")


def _best_in_slice(k: int, block_size: int):
    """Every user's k best movies of one item slice, `block_size` users at a time."""
    def best(users: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
        out = [pd.DataFrame({t.USER_ID: pd.Series(dtype="int32"), t.MOVIE_ID: pd.Series(dtype="int32"),
                             SCORE: pd.Series(dtype="float32")})]
        if users.empty or items.empty:
            return out[0]
        items = items.sort_values(t.MOVIE_ID)   # column order is movie_id order: ties to the lower id
        movie_ids = items[t.MOVIE_ID].to_numpy(np.int32)
        matrix = np.stack(items[FEATURES].to_numpy()).astype(np.float32)
        bias = items[BIAS].to_numpy(np.float32)
        for start in range(0, len(users), block_size):
            block = users.iloc[start:start + block_size]
            scores = np.stack(block[FEATURES].to_numpy()).astype(np.float32) @ matrix.T + bias
            seen = [np.asarray(s if s is not None else [], dtype=np.int32) for s in block[SEEN]]
            rows = np.repeat(np.arange(len(seen)), [len(s) for s in seen])
            hide_seen(scores, movie_ids, rows, np.concatenate(seen))
            rows, cols, _ = top_of_block(scores, min(k, len(movie_ids)))
            out.append(pd.DataFrame({t.USER_ID: block[t.USER_ID].to_numpy(np.int32)[rows],
                                     t.MOVIE_ID: movie_ids[cols], SCORE: scores[rows, cols]}))
        return pd.concat(out, ignore_index=True)
    return best


def top_k_blocked(user_factors: DataFrame, item_factors: DataFrame, seen: DataFrame | None, k: int,
                  *, item_slices: int, user_chunks: int, item_bias: dict[int, float] | None = None,
                  block_size: int = 4096) -> DataFrame:
    """What topk.top_k returns (same inputs, same columns, same rows), with no broadcast. A task
    holds one chunk's user factors, one slice's item factors and block_size x slice scores."""
    if k < 1 or item_slices < 1 or user_chunks < 1:
        raise ValueError(f"k, item_slices and user_chunks must be at least 1, got "
                         f"{k}, {item_slices}, {user_chunks}")
    spark = user_factors.sparkSession
    items = item_factors.select(F.col(t.MOVIE_ID).cast("int"), F.col(FEATURES).cast("array<float>"))
    if item_bias:
        bias = spark.createDataFrame([(int(m), float(b)) for m, b in item_bias.items()],
                                     f"{t.MOVIE_ID} int, {BIAS} float")
        items = items.join(bias, t.MOVIE_ID, "left").fillna(0.0, [BIAS])
    else:
        items = items.withColumn(BIAS, F.lit(0.0).cast("float"))
    chunks = spark.range(user_chunks).select(F.col("id").cast("int").alias(CHUNK))
    slices = spark.range(item_slices).select(F.col("id").cast("int").alias(SLICE))
    item_side = items.withColumn(SLICE, _slice_of(t.MOVIE_ID, item_slices)).crossJoin(chunks)
    users = user_factors.select(F.col(t.USER_ID).cast("int"), F.col(FEATURES).cast("array<float>"))
    user_side = users.withColumn(CHUNK, _slice_of(t.USER_ID, user_chunks)).crossJoin(slices)
    if seen is None:
        user_side = user_side.withColumn(SEEN, F.lit(None).cast("array<int>"))
    else:   # each user's seen movies, cut by the same slices as the items
        per_slice = (seen.select(F.col(t.USER_ID).cast("int"), F.col(t.MOVIE_ID).cast("int"))
                     .join(users.select(t.USER_ID), t.USER_ID, "left_semi")
                     .withColumn(SLICE, _slice_of(t.MOVIE_ID, item_slices))
                     .groupBy(t.USER_ID, SLICE).agg(F.collect_list(t.MOVIE_ID).alias(SEEN)))
        user_side = user_side.join(per_slice, [t.USER_ID, SLICE], "left")
    candidates = (user_side.groupBy(CHUNK, SLICE)
                  .cogroup(item_side.groupBy(CHUNK, SLICE))
                  .applyInPandas(_best_in_slice(k, block_size), _CANDIDATES))
    by_user = Window.partitionBy(t.USER_ID).orderBy(F.col(SCORE).desc(), F.col(t.MOVIE_ID))
    return (candidates.withColumn(RANK, F.row_number().over(by_user)).where(F.col(RANK) <= k)
            .select(t.USER_ID, t.MOVIE_ID, RANK, SCORE).to(StructType.fromDDL(OUTPUT_SCHEMA)))


def top_k_any_size(user_factors: DataFrame, item_factors: DataFrame, seen: DataFrame | None, k: int,
                   *, item_bias: dict[int, float] | None = None,
                   fallback: DataFrame | None = None) -> DataFrame:
    """topk.top_k's result for any catalogue: broadcast while the item factors are under
    MAX_BROADCAST_CONF, else cut into slices of at most half of it (one action to measure)."""
    spark = user_factors.sparkSession
    n_items, rank = item_factors.agg(F.count(F.lit(1)), F.max(F.size(FEATURES))).first()
    limit_mb = float(spark.conf.get(MAX_BROADCAST_CONF, str(MAX_BROADCAST_MB)))
    factors_mb = n_items * (rank or 0) * 4 / 2**20
    if factors_mb <= limit_mb:
        return top_k(user_factors, item_factors, seen, k, item_bias=item_bias, fallback=fallback)
    slices = math.ceil(2 * factors_mb / limit_mb)
    chunks = int(spark.conf.get("spark.sql.shuffle.partitions"))
    log.info("top-K: item factors %d x %d = %.0f MB, over %s = %.0f MB: %d item slices x %d user "
             "chunks, not broadcast", n_items, rank, factors_mb, MAX_BROADCAST_CONF, limit_mb,
             slices, chunks)
    scored = user_factors.where(F.col(FEATURES).isNotNull())
    lists = top_k_blocked(scored, item_factors, seen, k, item_slices=slices, user_chunks=chunks,
                          item_bias=item_bias)
    if fallback is None:
        return lists
    # the fallback ranking alone is broadcast (8 bytes a movie); the lists are topped up from it
    everyone = user_factors.select(t.USER_ID, F.lit(None).cast("array<float>").alias(FEATURES))
    return fill_lists(lists, top_k(everyone, None, seen, k, fallback=fallback).drop(t.SOURCE), k)


def fill_lists(primary: DataFrame, fallback: DataFrame, k: int) -> DataFrame:
    """Each user's primary list topped up to k rows from their fallback list (movies not already
    in it), ranks 1..k without gaps; users with no primary list get their fallback list: what
    top_k's fallback does inside its blocks. Adds `source`: model or fallback. Both inputs:
    (user_id, movie_id, rank, score)."""
    order = "_order"
    first = primary.withColumn(t.SOURCE, F.lit(MODEL)).withColumn(order, F.col(RANK))
    rest = (fallback.join(primary.select(t.USER_ID, t.MOVIE_ID), [t.USER_ID, t.MOVIE_ID], "left_anti")
            .withColumn(t.SOURCE, F.lit(FALLBACK)).withColumn(order, F.col(RANK) + k))
    by_user = Window.partitionBy(t.USER_ID).orderBy(order)
    return (first.unionByName(rest)
            .withColumn(RANK, F.row_number().over(by_user))
            .where(F.col(RANK) <= k).drop(order))
