"""Ingest a MovieLens release into the lake: one Delta table per file, bad rows quarantined.

The release is checked (layout, headers) before Spark reads a row, every file is parsed and
validated before any table is written, and the run is recorded last in `ingestion_runs`, so a
failed run leaves the lake as it was and the next run redoes it whole.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from movierec.core import delta_io, job_guard, tables as t
from movierec.core.config import Config
from movierec.core.logs import stage
from movierec.data.layouts import FileSpec, SourceError
from movierec.data.lines import read_numbered_lines
from movierec.data.parse import (LINE, RAW, RULE, quarantined_raw, reject_duplicates, reject_unknown_movies,
                                 split_fields, type_columns)
from movierec.data.source import OpenedSource, checksum, open_source

log = logging.getLogger(__name__)


@dataclass
class FileCount:
    file: str
    table: str
    read: int
    accepted: int
    rejected: int


@dataclass
class IngestResult:
    run_id: str
    source: str
    layout: str
    checksum: str
    skipped: bool = False
    files: list[FileCount] = field(default_factory=list)
    rejects_by_rule: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0

    @property
    def rows_read(self) -> int:
        return sum(f.read for f in self.files)

    @property
    def rows_accepted(self) -> int:
        return sum(f.accepted for f in self.files)

    @property
    def rows_rejected(self) -> int:
        return sum(f.rejected for f in self.files)


def epoch_of_year(year: int) -> int:
    return int(datetime(year, 1, 1, tzinfo=timezone.utc).timestamp())


def validate_file(spark: SparkSession, src: OpenedSource, spec: FileSpec, *, min_epoch: int,
                  max_epoch: int, movie_ids: DataFrame | None) -> tuple[DataFrame, int]:
    """All data lines of one file with typed columns and `rule`; and the number of data lines."""
    lines, n_lines = read_numbered_lines(spark, str(src.files[spec.table]))
    if spec.header is not None:
        lines, n_lines = lines.where(F.col(LINE) > 1), n_lines - 1
    else:   # a byte order mark is no part of a headerless file's first value
        lines = lines.withColumn(RAW, F.when(F.col(LINE) == 1, F.regexp_replace(RAW, "^\ufeff", ""))
                                 .otherwise(F.col(RAW)))
    rows = type_columns(split_fields(lines, spec), spec, src.layout,
                        min_epoch=min_epoch, max_epoch=max_epoch, genres=src.genres)
    if spec.refers_to_movies and movie_ids is not None:
        rows = reject_unknown_movies(rows, movie_ids)
    if spec.dedup_key:
        rows = reject_duplicates(rows, spec.dedup_key)
    # only the quarantine keeps a line's text: 600 MB less to cache for 25M accepted ratings
    return rows.withColumn(RAW, F.when(F.col(RULE).isNotNull(), F.col(RAW))), n_lines


def rejects_of(rows: DataFrame, spec: FileSpec, digest: str) -> DataFrame:
    return rows.where(F.col(RULE).isNotNull()).select(
        F.lit(digest).alias("source_checksum"), F.lit(spec.filename).alias("source_file"),
        F.col(LINE).alias("line_number"), *quarantined_raw(),
        F.lit(spec.table).alias("target_table"), F.col(RULE).alias("rule"))


def count_by_rule(rows: DataFrame, n_lines: int, spec: FileSpec) -> tuple[FileCount, dict[str, int]]:
    by_rule = {r[RULE]: r["n"] for r in rows.groupBy(RULE).agg(F.count(F.lit(1)).alias("n")).collect()}
    accepted = by_rule.pop(None, 0)
    rejected = sum(by_rule.values())
    if accepted + rejected != n_lines:
        raise RuntimeError(f"{spec.filename}: {n_lines} lines read but {accepted} accepted + "
                           f"{rejected} rejected: rows were lost or duplicated")
    return FileCount(spec.filename, spec.table, n_lines, accepted, rejected), by_rule


@job_guard.job("ingest")
def run(spark: SparkSession, cfg: Config, run_date: str | None = None) -> IngestResult:
    started, t0 = datetime.now(timezone.utc), time.perf_counter()
    lake = cfg.path("lake")
    if not cfg["ingest.source"]:
        raise SourceError("no source given: pass --source PATH (a MovieLens folder or .zip)")
    source = cfg.path("ingest.source")
    if not source.exists():
        raise SourceError(f"{source}: source not found (expected a MovieLens folder or .zip)")
    run_id = uuid.uuid4().hex[:12]
    with stage(log, "checksum"):
        digest = checksum(source)
    latest = delta_io.latest_row(spark, lake, t.INGESTION_RUNS, "started_at")
    if latest and latest["checksum"] == digest and not cfg["ingest.force"]:
        log.info("source %s (sha256 %s) is what run %s ingested at %s: nothing to do",
                 source, digest[:12], latest["run_id"], latest["started_at"])
        return IngestResult(latest["run_id"], str(source), latest["layout"], digest, skipped=True)

    staging = lake / "_staging" / run_id
    try:
        src = open_source(source, staging)
        result = _ingest(spark, src, lake, run_id, cfg)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result.duration_s = time.perf_counter() - t0
    runs = spark.createDataFrame([(
        run_id, started, str(source), src.layout.name, digest, result.rows_read,
        result.rows_accepted, result.rows_rejected, result.duration_s,
        [(f.file, f.table, f.read, f.accepted, f.rejected) for f in result.files],
    )], t.SCHEMAS[t.INGESTION_RUNS])
    delta_io.append(runs, lake, t.INGESTION_RUNS)
    log.info("ingest %s: %s rows read = %s accepted + %s rejected in %.1fs", run_id,
             f"{result.rows_read:,}", f"{result.rows_accepted:,}", f"{result.rows_rejected:,}",
             result.duration_s)
    return result


def _ingest(spark: SparkSession, src: OpenedSource, lake: Path, run_id: str, cfg: Config) -> IngestResult:
    result = IngestResult(run_id, str(src.source), src.layout.name, src.checksum)
    limits = dict(min_epoch=epoch_of_year(cfg["ingest.min_year"]),
                  max_epoch=int(datetime.now(timezone.utc).timestamp()))
    validated: dict[str, DataFrame] = {}
    movie_ids = None
    for spec in src.layout.files:
        if spec.table not in src.files:
            continue
        with stage(log, f"validate {spec.filename}") as st:
            rows, n_lines = validate_file(spark, src, spec, movie_ids=movie_ids, **limits)
            rows = rows.persist(StorageLevel.MEMORY_AND_DISK)
            counts, by_rule = count_by_rule(rows, n_lines, spec)
            st.rows = n_lines
        log.info("%s: %s read, %s accepted, %s rejected %s", spec.filename, f"{counts.read:,}",
                 f"{counts.accepted:,}", f"{counts.rejected:,}", by_rule or "")
        result.files.append(counts)
        for rule, n in by_rule.items():
            result.rejects_by_rule[rule] = result.rejects_by_rule.get(rule, 0) + n
        validated[spec.table] = rows
        if spec.table == t.MOVIES:
            movie_ids = rows.where(F.col(RULE).isNull()).select(t.MOVIE_ID)

    with stage(log, "write tables"):
        for table in t.INGESTED_TABLES:
            if table in validated:
                accepted = validated[table].where(F.col(RULE).isNull())
            else:  # the release has no such file: the table must not keep another release's rows
                accepted = spark.createDataFrame([], t.SCHEMAS[table])
            delta_io.overwrite(accepted, lake, table)
        rejects = [rejects_of(rows, src.layout.spec(table), src.checksum)
                   for table, rows in validated.items()]
        all_rejects = rejects[0]
        for r in rejects[1:]:
            all_rejects = all_rejects.unionByName(r)
        delta_io.overwrite(all_rejects, lake, t.REJECTS,
                           replace_where=f"source_checksum = '{src.checksum}'")
    for rows in validated.values():
        rows.unpersist()
    return result
