"""Text files as (line_number, raw) rows, numbered exactly as an editor would, without a
pass through Python: quarantined rows must name the line they came from.

Spark's text reader splits a large file into blocks read in parallel. Each row's block start
(input_file_block_start) and its id (monotonically_increasing_id, consecutive within a
partition) are kept; one small aggregate counts the rows of every block, and a row's line number
is the number of lines in the blocks before it plus its place inside its own block.
Hadoop's reader ends lines at LF, CRLF or CR, so CRLF files give clean raw text.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F


def read_numbered_lines(spark: SparkSession, path: str) -> tuple[DataFrame, int]:
    """Returns (line_number: long, 1-based; raw: string) for every line of one text file,
    and the number of lines, which the counting pass gives for free."""
    scanned = (spark.read.text(path)
               .select(F.col("value").alias("raw"),
                       F.spark_partition_id().alias("_pid"),
                       F.input_file_block_start().alias("_block"),
                       F.monotonically_increasing_id().alias("_mid")))
    blocks = (scanned.groupBy("_pid", "_block")
              .agg(F.min("_mid").alias("_first"), F.count(F.lit(1)).alias("_n"))
              .collect())
    offsets, seen = [], 0
    for b in sorted(blocks, key=lambda r: r["_block"]):
        # line_number = lines before this block + (id - first id of the block) + 1
        offsets.append((b["_pid"], b["_block"], seen - b["_first"] + 1))
        seen += b["_n"]
    if not offsets:
        return spark.createDataFrame([], "line_number long, raw string"), 0
    base = spark.createDataFrame(offsets, "_pid int, _block long, _base long")
    numbered = (scanned.join(F.broadcast(base), on=["_pid", "_block"], how="inner")
                .select((F.col("_mid") + F.col("_base")).alias("line_number"), "raw"))
    return numbered, seen
