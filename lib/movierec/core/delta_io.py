"""Reads and writes of lake tables. Each table lives at <lake>/<name> with the schema in tables.py."""

from __future__ import annotations

from pathlib import Path

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from movierec.core import job_guard, tables
from movierec.core.errors import UserError

# Which job creates each table, for the "run X first" message: the first job that writes it.
PRODUCER: dict[str, str] = {}
for _job, _names in tables.JOB_TABLES.items():
    for _name in _names:
        PRODUCER.setdefault(_name, _job)


class MissingTableError(UserError, RuntimeError):
    pass


def table_path(lake: Path | str, name: str) -> str:
    return str(Path(lake) / name)


def exists(spark: SparkSession, lake: Path | str, name: str) -> bool:
    return DeltaTable.isDeltaTable(spark, table_path(lake, name))


def read(spark: SparkSession, lake: Path | str, name: str) -> DataFrame:
    job_guard.check_readable(lake, name)
    if not exists(spark, lake, name):
        job = PRODUCER.get(name, "the job that writes it")
        raise MissingTableError(
            f"table {name!r} not found at {table_path(lake, name)}: run `{job}` first")
    return spark.read.format("delta").load(table_path(lake, name))


def latest_row(spark: SparkSession, lake: Path | str, name: str, order_by: str) -> dict | None:
    """The row of a log table with the greatest `order_by`, or None if there is none yet."""
    if not exists(spark, lake, name):
        return None
    row = read(spark, lake, name).orderBy(F.col(order_by).desc()).first()
    return row.asDict() if row else None


def delta_table(spark: SparkSession, lake: Path | str, name: str) -> DeltaTable:
    """The table to change in place (MERGE, DELETE)."""
    read(spark, lake, name)  # the missing-table error that names the job to run
    job_guard.before_write(lake, name)
    return DeltaTable.forPath(spark, table_path(lake, name))


def version(spark: SparkSession, lake: Path | str, name: str) -> int | None:
    if not exists(spark, lake, name):
        return None
    dt = DeltaTable.forPath(spark, table_path(lake, name))
    return dt.history(1).select("version").first()[0]


def ensure(spark: SparkSession, lake: Path | str, name: str) -> DeltaTable:
    """Creates the table with its declared schema and partitioning if it does not exist yet;
    every write goes through here first."""
    job_guard.before_write(lake, name)
    partition_by = tables.PARTITION_BY.get(name, ())
    builder = (DeltaTable.createIfNotExists(spark)
               .location(table_path(lake, name))
               .addColumns(tables.SCHEMAS[name]))
    if partition_by:
        builder = builder.partitionedBy(*partition_by)
    table = builder.execute()
    _add_new_columns(spark, lake, name, table)
    return table


def _add_new_columns(spark: SparkSession, lake, name: str, table: DeltaTable) -> None:
    """A lake written before a nullable column was declared gets the column (null in old rows)."""
    have = set(table.toDF().columns)
    missing = [f for f in tables.SCHEMAS[name].fields if f.name not in have]
    if not missing:
        return
    if any(not f.nullable for f in missing):
        raise UserError(f"table {name!r} at {table_path(lake, name)} lacks required columns "
                        f"{[f.name for f in missing]}: rerun `{PRODUCER.get(name, 'its job')}`")
    columns = ", ".join(f"{f.name} {f.dataType.simpleString()}" for f in missing)
    spark.sql(f"ALTER TABLE delta.`{table_path(lake, name)}` ADD COLUMNS ({columns})")


def conform(df: DataFrame, name: str) -> DataFrame:
    """Selects exactly the table's columns, cast to its types: the write contract."""
    have = {f.name: f.dataType.simpleString() for f in df.schema.fields}
    # Nested types that differ only in nullability cannot be cast; they need no cast either.
    return df.select([F.col(f.name) if have.get(f.name) == f.dataType.simpleString()
                      else F.col(f.name).cast(f.dataType).alias(f.name)
                      for f in tables.SCHEMAS[name].fields])


def overwrite(df: DataFrame, lake: Path | str, name: str, replace_where: str | None = None) -> None:
    """Replaces the table's content (or the rows matching replace_where) in one Delta commit."""
    spark = df.sparkSession
    ensure(spark, lake, name)
    writer = conform(df, name).write.format("delta").mode("overwrite")
    if replace_where:
        writer = writer.option("replaceWhere", replace_where)
    writer.save(table_path(lake, name))


def append(df: DataFrame, lake: Path | str, name: str) -> None:
    ensure(df.sparkSession, lake, name)
    conform(df, name).write.format("delta").mode("append").save(table_path(lake, name))
