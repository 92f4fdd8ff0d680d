"""New data from files: rating (and movie) files dropped in a landing folder, taken once each.

`ingest_increment --source DIR` takes every `*.csv` in DIR that no earlier run took (by sha256
checksum, landing_files), movie files first (header movieId,title,genres: new movies are MERGEd
into movies, known ones left alone) and then rating files (header
userId,movieId,rating,timestamp). Each file goes through the ingest rules line by line: a
rejected line goes to rejects with its file, line number and rule, a rating for a movie that
movies lacks included, so that for every file lines read = accepted + rejected. A file whose
first line is not a known header has every line rejected (rule `header`); an empty file is
logged with no rows. The night's accepted ratings, from all its rating files, are MERGEd into
ratings_increments on (user_id, movie_id, ts) in one commit, with tonight's run date and each
row's file as its source, and their rejects are written in one commit too. The files'
landing_files rows are written last: a run killed before them is redone by the rerun, whose
MERGE and rejects (replaced by checksum) add nothing twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import reduce
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from movierec.core import delta_io, tables as t
from movierec.core.config import Config
from movierec.core.logs import stage
from movierec.data.ingest import FileCount, count_by_rule, epoch_of_year, rejects_of, validate_file
from movierec.data.known import record_arrivals
from movierec.data.layouts import CSV, SourceError
from movierec.data.lines import read_numbered_lines
from movierec.data.parse import LINE, RULE, quarantined_raw
from movierec.data.source import OpenedSource, checksum, first_line

log = logging.getLogger(__name__)
BAD_HEADER = "header"
SPECS = {spec.header: spec for spec in (CSV.spec(t.MOVIES), CSV.spec(t.RATINGS))}


@dataclass
class LandedFile:
    file: str
    checksum: str
    table: str          # ratings, movies, or "unknown" for a file with a bad header
    read: int
    accepted: int
    rejected: int
    skipped: bool = False   # taken by an earlier run


def landed_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise SourceError(f"{folder}: landing folder not found")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".csv")


def _taken(spark: SparkSession, lake) -> dict[str, str]:
    if not delta_io.exists(spark, lake, t.LANDING_FILES):
        return {}
    return {r[0]: str(r[1]) for r in delta_io.read(spark, lake, t.LANDING_FILES)
            .select("checksum", t.RUN_DATE).collect()}


def _kind(path: Path) -> str | None:
    """The table a file feeds, by its header; None for an unknown header."""
    spec = SPECS.get(first_line(path, "utf-8")) if path.stat().st_size else None
    return spec.table if spec else None


def run(spark: SparkSession, cfg: Config, run_date: str) -> dict:
    """Takes the new files of the landing folder cfg increment.source for run_date."""
    lake, folder = cfg.path("lake"), cfg.path("increment.source")
    taken = _taken(spark, lake)
    files = landed_files(folder)
    limits = dict(min_epoch=epoch_of_year(cfg["ingest.min_year"]),
                  max_epoch=int(datetime.now(timezone.utc).timestamp()))
    # movie files first: a rating file of the same night may rate a movie they add
    order = sorted(files, key=lambda p: (_kind(p) != t.MOVIES, p.name))
    results: list[LandedFile] = []
    pending = _Pending()   # the rating files' rows, written together after the loop
    for path in order:
        digest = checksum(path)
        if digest in taken:
            log.info("%s: taken already on %s (sha256 %s): skipped", path.name, taken[digest], digest[:12])
            results.append(LandedFile(path.name, digest, "-", 0, 0, 0, skipped=True))
            continue
        kind = _kind(path)
        with stage(log, f"landing {path.name}") as st:
            if path.stat().st_size == 0:
                counts = FileCount(path.name, "unknown", 0, 0, 0)
                log.warning("%s: empty file: nothing to take", path.name)
            elif kind is None:
                counts = _reject_whole_file(spark, path, digest, pending)
            else:
                spec = CSV.spec(kind)
                src = OpenedSource(path, CSV, folder, digest, {kind: path})
                movie_ids = delta_io.read(spark, lake, t.MOVIES).select(t.MOVIE_ID) if kind == t.RATINGS else None
                rows, n_lines = validate_file(spark, src, spec, movie_ids=movie_ids, **limits)
                rows = rows.cache()
                counts, by_rule = count_by_rule(rows, n_lines, spec)
                counts = FileCount(path.name, kind, counts.read, counts.accepted, counts.rejected)
                rejects = rejects_of(rows, spec, digest).withColumn("source_file", F.lit(path.name))
                accepted = rows.where(F.col(RULE).isNull())
                if kind == t.MOVIES:   # now: the night's rating files are checked against them
                    delta_io.overwrite(rejects, lake, t.REJECTS, replace_where=f"source_checksum = '{digest}'")
                    _merge_movies(spark, lake, accepted)
                    rows.unpersist()
                else:
                    pending.add(digest, rejects, rows, accepted
                                .withColumn(t.RUN_DATE, F.lit(run_date).cast("date"))
                                .withColumn(t.BATCH_WEEK, F.lit(None).cast("int"))
                                .withColumn(t.ARRIVAL_SOURCE, F.lit(f"landing {path.name}")))
                if by_rule:
                    log.info("%s: rejected %s", path.name, by_rule)
            st.rows = counts.read
        if kind == t.MOVIES:
            _log_files(spark, lake, [(counts, digest)], run_date)
        else:
            pending.counts.append((counts, digest))
        taken[digest] = run_date   # a copy of this file later in the folder is the same file
        results.append(LandedFile(path.name, digest, counts.table, counts.read, counts.accepted,
                                  counts.rejected))
        log.info("%s (%s): %d read = %d accepted + %d rejected", path.name, counts.table,
                 counts.read, counts.accepted, counts.rejected)
    pending.write(spark, lake, run_date)
    return {"run_date": run_date, "source": str(folder), "files": [r.__dict__ for r in results],
            "added": sum(r.accepted for r in results if r.table == t.RATINGS)}


@dataclass
class _Pending:
    """The rating (and bad-header) files' rejects and accepted rows: one rejects commit, one
    MERGE and one landing_files commit for the whole night instead of three per file."""
    checksums: list[str] = field(default_factory=list)
    rejects: list[DataFrame] = field(default_factory=list)
    cached: list[DataFrame] = field(default_factory=list)
    arrivals: list[DataFrame] = field(default_factory=list)
    counts: list[tuple[FileCount, str]] = field(default_factory=list)

    def add(self, digest: str, rejects: DataFrame, cached: DataFrame | None = None,
            arrivals: DataFrame | None = None) -> None:
        self.checksums.append(digest)
        self.rejects.append(rejects)
        self.cached += [cached] if cached is not None else []
        self.arrivals += [arrivals] if arrivals is not None else []

    def write(self, spark: SparkSession, lake, run_date: str) -> None:
        if self.rejects:
            listed = ", ".join(f"'{c}'" for c in self.checksums)
            delta_io.overwrite(reduce(DataFrame.unionByName, self.rejects), lake, t.REJECTS,
                               replace_where=f"source_checksum IN ({listed})")
        if self.arrivals:
            record_arrivals(spark, lake, reduce(DataFrame.unionByName, self.arrivals))
        for rows in self.cached:
            rows.unpersist()
        if self.counts:
            _log_files(spark, lake, self.counts, run_date)


def _reject_whole_file(spark: SparkSession, path: Path, digest: str, pending: _Pending) -> FileCount:
    lines, n = read_numbered_lines(spark, str(path))
    rejects = lines.select(F.lit(digest).alias("source_checksum"), F.lit(path.name).alias("source_file"),
                           F.col(LINE).alias("line_number"), *quarantined_raw(),
                           F.lit("unknown").alias("target_table"), F.lit(BAD_HEADER).alias(RULE))
    pending.add(digest, rejects)
    log.warning("%s: line 1 is %r, not a ratings or movies header (%s): every line rejected",
                path.name, first_line(path, "utf-8")[:80], " | ".join(SPECS))
    return FileCount(path.name, "unknown", n, 0, n)


def _merge_movies(spark: SparkSession, lake, movies: DataFrame) -> None:
    target = delta_io.delta_table(spark, lake, t.MOVIES)
    (target.alias("known").merge(delta_io.conform(movies, t.MOVIES).alias("new"),
                                 f"known.{t.MOVIE_ID} = new.{t.MOVIE_ID}")
     .whenNotMatchedInsertAll().execute())


def _log_files(spark: SparkSession, lake, files: list[tuple[FileCount, str]], run_date: str) -> None:
    rows = [(digest, c.file, date.fromisoformat(run_date), c.table, c.read, c.accepted, c.rejected)
            for c, digest in files]
    delta_io.append(spark.createDataFrame(rows, t.SCHEMAS[t.LANDING_FILES]), lake, t.LANDING_FILES)
