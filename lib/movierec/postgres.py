"""The PostgreSQL sink: connection settings, the served tables' DDL, and atomic publishing.

Settings come from the environment (MOVIEREC_PG_URL, or MOVIEREC_PG_HOST/_PORT/_DB/_USER/
_PASSWORD); with none of them set the embedded server (movierec.pg_server) is started or reused.

publish() never lets a reader see a missing, empty or half-loaded table: the DataFrame is loaded
into `<table>__staging`, which gets its primary key, indexes and statistics, and then one short
transaction renames the live table away, renames staging into its place and drops the old one.
Those renames take an ACCESS EXCLUSIVE lock, so a reader arriving during the swap waits for it
(milliseconds) and then reads the new table: PostgreSQL looks a table name up again once the lock
it waited for is granted, so an in-flight query does not fail with "relation does not exist"
(tests/test_postgres.py checks this with concurrent readers, which is why no view is needed).
Two things readers must not do: hold a transaction open across publishes (it holds a lock the
swap waits for; the swap gives up after `swap_lock_timeout_s` so it never stalls other readers
for long, and retries), or read in REPEATABLE READ with a snapshot older than the publish (the
new table's rows are invisible to it). Plain autocommit / READ COMMITTED reads are fine.
"""

from __future__ import annotations

import logging
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence
from urllib.parse import quote, unquote, urlsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from pyspark.sql import DataFrame
from pyspark.sql import functions as F, types as T

from movierec.config import Config, secret
from movierec.errors import UserError

log = logging.getLogger(__name__)

ENV_URL = "MOVIEREC_PG_URL"
ENV_HOST, ENV_PORT, ENV_DB = "MOVIEREC_PG_HOST", "MOVIEREC_PG_PORT", "MOVIEREC_PG_DB"
ENV_USER, ENV_PASSWORD = "MOVIEREC_PG_USER", "MOVIEREC_PG_PASSWORD"
DEFAULT_PORT, DEFAULT_DB, DEFAULT_USER = 5432, "movierec", "movierec"


class PublishError(UserError, RuntimeError):
    pass


@dataclass(frozen=True)
class PgSettings:
    """Where to connect. The password is left out of repr() and str(), so logging the settings
    (or an object holding them) cannot leak it."""

    host: str
    port: int
    database: str
    user: str
    password: str | None = field(default=None, repr=False)

    def _netloc(self, password: str | None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        auth = quote(self.user, safe="") + (f":{password}" if password is not None else "")
        return f"{auth}@{host}:{self.port}"

    def url(self) -> str:
        """postgresql:// URL with the password: for libpq tools, never for logs."""
        pw = quote(self.password, safe="") if self.password is not None else None
        return f"postgresql://{self._netloc(pw)}/{quote(self.database, safe='')}"

    def masked(self) -> str:
        pw = "***" if self.password is not None else None
        return f"postgresql://{self._netloc(pw)}/{quote(self.database, safe='')}"

    def jdbc_url(self) -> str:
        """The JDBC URL without credentials: pass user and password as options."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"jdbc:postgresql://{host}:{self.port}/{self.database}"

    def dsn(self) -> str:
        """libpq key=value string, password included, for psycopg.connect()."""
        return make_conninfo(host=self.host, port=self.port, dbname=self.database, user=self.user,
                             password=self.password)

    def __str__(self) -> str:
        return self.masked()


def parse_url(url: str) -> PgSettings:
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise UserError(f"{ENV_URL} wants postgresql://user:password@host:port/db, got "
                        f"scheme {parts.scheme!r} and host {parts.hostname!r}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as e:
        raise UserError(f"{ENV_URL} has a bad port: {e}") from None
    return PgSettings(parts.hostname, port, unquote(parts.path.lstrip("/")) or DEFAULT_DB,
                      unquote(parts.username) if parts.username else DEFAULT_USER,
                      unquote(parts.password) if parts.password is not None else None)


def env_for(settings: PgSettings) -> dict[str, str]:
    """The MOVIEREC_PG_* variables that point connection_settings() (and every job) at `settings`."""
    values = {ENV_HOST: settings.host, ENV_PORT: settings.port, ENV_DB: settings.database,
              ENV_USER: settings.user, ENV_PASSWORD: settings.password}
    return {name: str(value) for name, value in values.items() if value is not None}


def connection_settings(cfg: Config) -> PgSettings:
    """MOVIEREC_PG_URL, then the single MOVIEREC_PG_* variables over it (so a URL without a
    password can take MOVIEREC_PG_PASSWORD); with none set, the embedded server."""
    url = secret(ENV_URL)
    parts = {name: secret(name) for name in (ENV_HOST, ENV_PORT, ENV_DB, ENV_USER, ENV_PASSWORD)}
    if not url and not any(parts.values()):
        from movierec import pg_server

        settings, source = pg_server.start(pg_server.data_dir(cfg)), "the embedded server"
    else:
        if not url and not parts[ENV_HOST]:
            raise UserError(f"{ENV_HOST} (or {ENV_URL}) must be set when any MOVIEREC_PG_* is")
        base = parse_url(url) if url else PgSettings("", DEFAULT_PORT, DEFAULT_DB, DEFAULT_USER)
        port = parts[ENV_PORT] or base.port
        if not str(port).isdigit():
            raise UserError(f"{ENV_PORT} wants a number, got {port!r}")
        settings = PgSettings(parts[ENV_HOST] or base.host, int(port), parts[ENV_DB] or base.database,
                              parts[ENV_USER] or base.user, parts[ENV_PASSWORD] or base.password)
        source = "the environment"
    log.info("PostgreSQL: %s (from %s)", settings.masked(), source)
    return settings


@contextmanager
def connect(settings: PgSettings, **kwargs) -> Iterator[psycopg.Connection]:
    """An autocommit connection; an unreachable server is a one-line UserError."""
    try:
        conn = psycopg.connect(settings.dsn(), autocommit=True, connect_timeout=10,
                               application_name="movierec", **kwargs)
    except psycopg.OperationalError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PublishError(f"cannot connect to PostgreSQL at {settings.masked()}: {first}") from None
    with conn:
        yield conn


# The served tables: the one place their DDL lives.
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
METHODS = ("copy", "jdbc")
DEFAULT_METHOD = "copy"   # ~1.3x the JDBC writer's rows/s on 3M rows (730k vs 555k rows/s)


def _spark_type(pg_type: str) -> T.DataType:
    base = re.sub(r"\s+not\s+null$", "", pg_type.strip(), flags=re.I).lower()
    if base not in _SPARK_TYPES:
        raise ValueError(f"no Spark type known for PostgreSQL type {pg_type!r}")
    return _SPARK_TYPES[base]


def _index_name(table: str, columns: Sequence[str]) -> str:
    return f"{table}_{'_'.join(columns)}_idx"


def _check_spec(spec: PgTable) -> None:
    names = [c for c, _ in spec.columns]
    for name in [spec.name + STAGING, *names, *(_index_name(spec.name + STAGING, i) for i in spec.indexes)]:
        if not _NAME.fullmatch(name) or len(name) > 63:
            raise ValueError(f"{name!r} is not a plain lower-case PostgreSQL name of at most 63 chars")
    for cols in (spec.primary_key, *spec.indexes):
        if not cols or set(cols) - set(names):
            raise ValueError(f"{spec.name}: key/index columns {cols} must be among {names}")
    for _, pg_type in spec.columns:
        _spark_type(pg_type)


def _conformed(df: DataFrame, spec: PgTable) -> DataFrame:
    """The DDL as the schema contract: its columns, in its order, cast to its types."""
    missing = [c for c, _ in spec.columns if c not in df.columns]
    if missing:
        raise PublishError(f"cannot publish {spec.name}: the DataFrame lacks {missing} "
                           f"(has {df.columns})")
    return df.select([F.col(c).cast(_spark_type(t)).alias(c) for c, t in spec.columns])


def publish(df: DataFrame, table: str, settings: PgSettings, *, primary_key: Sequence[str],
            ddl_columns: Sequence[tuple[str, str]], indexes: Sequence[Sequence[str]] = (),
            method: str = DEFAULT_METHOD, parallelism: int | None = None,
            batch_size: int = 20_000, grant_select_to: Sequence[str] = (),
            swap_lock_timeout_s: float = 5.0, swap_attempts: int = 6) -> int:
    """Replaces `table` with the rows of `df` atomically; returns the published row count.

    method: "copy" (COPY FROM STDIN, one stream per Spark partition) or "jdbc" (Spark's JDBC
    writer, batched inserts). parallelism: at most this many partitions load at once (each is a
    connection). grant_select_to: roles to grant SELECT on the new table (grants do not survive
    the swap, the table being new). A failure anywhere leaves the live table as it was.
    """
    spec = PgTable(table, tuple((c, t) for c, t in ddl_columns), tuple(primary_key),
                   tuple(tuple(i) for i in indexes))
    _check_spec(spec)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    rows = _conformed(df, spec)
    parallelism = parallelism or _default_parallelism(df)
    staging = table + STAGING
    log.info("publish %s to %s: loading %s by %s, %d streams", table, settings.masked(),
             staging, method, parallelism)
    with connect(settings) as conn:
        _create_staging(conn, spec)
    try:
        started = time.perf_counter()
        _LOADERS[method](rows, spec, settings, parallelism=parallelism, batch_size=batch_size)
        load_s = time.perf_counter() - started
        with connect(settings) as conn:
            count = _finish_staging(conn, spec, grant_select_to)
            log.info("publish %s: %s rows loaded in %.1fs (%.0f rows/s), keyed and indexed in %.1fs",
                     table, f"{count:,}", load_s, count / max(load_s, 1e-9),
                     time.perf_counter() - started - load_s)
            _swap(conn, spec, swap_lock_timeout_s, swap_attempts)
    except BaseException:
        _drop_quietly(settings, staging)
        raise
    log.info("publish %s: live with %s rows", table, f"{count:,}")
    return count


def _default_parallelism(df: DataFrame) -> int:
    try:
        cores = df.sparkSession.sparkContext.defaultParallelism
    except Exception:   # Spark Connect has no SparkContext
        cores = 4
    return max(1, min(cores, 8))   # beyond ~8 streams PostgreSQL's WAL is the bottleneck


def _create_staging(conn: psycopg.Connection, spec: PgTable) -> None:
    """Drops a staging table a dead publish may have left, and creates it empty, without
    keys: building the primary key once after the load is faster than maintaining it row by
    row, and it is also where duplicate rows are caught."""
    staging = sql.Identifier(spec.name + STAGING)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(staging))
    columns = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t))
                                 for c, t in spec.columns)
    conn.execute(sql.SQL("CREATE TABLE {} ({})").format(staging, columns))


def _finish_staging(conn: psycopg.Connection, spec: PgTable, grant_select_to: Sequence[str]) -> int:
    staging = spec.name + STAGING
    ident = sql.Identifier(staging)
    cols = lambda names: sql.SQL(", ").join(map(sql.Identifier, names))  # noqa: E731
    conn.execute("SET maintenance_work_mem = '256MB'")
    try:
        conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
            ident, sql.Identifier(f"{staging}_pkey"), cols(spec.primary_key)))
    except psycopg.errors.UniqueViolation as e:
        detail = e.diag.message_detail or str(e)
        raise PublishError(f"cannot publish {spec.name}: duplicate primary key "
                           f"{spec.primary_key} in the new rows ({detail}); the live table is "
                           f"unchanged") from None
    for index in spec.indexes:
        conn.execute(sql.SQL("CREATE INDEX {} ON {} ({})").format(
            sql.Identifier(_index_name(staging, index)), ident, cols(index)))
    for role in grant_select_to:
        conn.execute(sql.SQL("GRANT SELECT ON {} TO {}").format(ident, sql.Identifier(role)))
    conn.execute(sql.SQL("ANALYZE {}").format(ident))
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident)).fetchone()[0]


def _swap(conn: psycopg.Connection, spec: PgTable, lock_timeout_s: float, attempts: int) -> None:
    """Staging becomes the live table in one transaction, its key and indexes taking the live
    names (index names are unique per schema, so the next staging can reuse its own)."""
    live, staging, old = spec.name, spec.name + STAGING, spec.name + OLD
    I = sql.Identifier  # noqa: E741
    statements = [
        sql.SQL("DROP TABLE IF EXISTS {}").format(I(old)),
        sql.SQL("ALTER TABLE IF EXISTS {} RENAME TO {}").format(I(live), I(old)),
        sql.SQL("ALTER TABLE {} RENAME TO {}").format(I(staging), I(live)),
        sql.SQL("DROP TABLE IF EXISTS {}").format(I(old)),
        sql.SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
            I(live), I(f"{staging}_pkey"), I(f"{live}_pkey")),
        *(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
            I(_index_name(staging, i)), I(_index_name(live, i))) for i in spec.indexes),
    ]
    for attempt in range(1, attempts + 1):
        try:
            with conn.transaction():
                # Waiting for a long reader's lock would queue every new reader behind this
                # transaction: give up quickly instead, and try again.
                conn.execute("SELECT set_config('lock_timeout', %s, true)",
                             [f"{int(lock_timeout_s * 1000)}ms"])
                for statement in statements:
                    conn.execute(statement)
            return
        except psycopg.errors.LockNotAvailable:
            log.warning("publish %s: swap attempt %d/%d timed out waiting for readers' locks",
                        live, attempt, attempts)
            time.sleep(min(2.0 ** attempt, 30.0) / 4)
    raise PublishError(f"cannot publish {live}: readers held locks on it through {attempts} "
                       f"swap attempts of {lock_timeout_s}s; the live table is unchanged")


def _drop_quietly(settings: PgSettings, table: str) -> None:
    try:
        with connect(settings) as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
    except Exception as e:   # the next publish drops it anyway
        log.warning("could not drop %s after a failed publish: %s", table, e)


@contextmanager
def _py4j_quiet() -> Iterator[None]:
    """py4j logs every command it sends at DEBUG, and the password is in some of them (the
    JDBC options, the pickled COPY function): keep those records from ever being made."""
    logger = logging.getLogger("py4j")
    level = logger.level
    logger.setLevel(max(level, logging.INFO))
    try:
        yield
    finally:
        logger.setLevel(level)


def _load_jdbc(rows: DataFrame, spec: PgTable, settings: PgSettings, *, parallelism: int,
               batch_size: int) -> None:
    """Spark's JDBC writer. reWriteBatchedInserts makes the driver send multi-row INSERTs
    instead of one statement per row, which is most of its speed."""
    writer = (rows.write.format("jdbc")
              .option("url", settings.jdbc_url() + "?reWriteBatchedInserts=true")
              .option("driver", "org.postgresql.Driver")
              .option("dbtable", f'"{spec.name + STAGING}"')
              .option("user", settings.user)
              .option("batchsize", str(batch_size))
              .option("numPartitions", str(parallelism))
              .option("isolationLevel", "READ_COMMITTED")
              .mode("append"))
    with _py4j_quiet():
        if settings.password is not None:
            writer = writer.option("password", settings.password)
        writer.save()


def _pg_array_literal(column: str) -> F.Column:
    """text[] as PostgreSQL's array literal {"a","b"}, since CSV has no arrays."""
    quoted = F.transform(F.col(column), lambda s: F.concat(
        F.lit('"'), F.replace(F.replace(s, F.lit("\\"), F.lit("\\\\")), F.lit('"'), F.lit('\\"')),
        F.lit('"')))
    return F.concat(F.lit("{"), F.array_join(quoted, ","), F.lit("}")).alias(column)


def _copy_partition(dsn: str, copy_sql: str) -> Callable:
    """Runs on the executors: one connection and one COPY per partition, committed at its
    end, each Arrow batch turned into CSV by Arrow's C++ writer. Arrow quotes every string and
    leaves nulls as bare empty fields, which is exactly how COPY's CSV tells '' from NULL."""
    def run(batches):
        import pyarrow as pa
        from pyarrow import csv

        options, n = csv.WriteOptions(include_header=False), 0
        with psycopg.connect(dsn, connect_timeout=10, application_name="movierec-copy") as conn:
            with conn.cursor() as cur, cur.copy(copy_sql) as copy:
                for batch in batches:
                    sink = pa.BufferOutputStream()
                    csv.write_csv(batch, sink, options)
                    copy.write(memoryview(sink.getvalue()))
                    n += batch.num_rows
        yield pa.RecordBatch.from_pydict({"rows": pa.array([n], pa.int64())})
    return run


def _load_copy(rows: DataFrame, spec: PgTable, settings: PgSettings, *, parallelism: int,
               batch_size: int) -> None:
    """COPY FROM STDIN fed from Arrow batches (batch_size is the JDBC writer's and unused)."""
    arrays = [c for c, t in spec.columns if isinstance(_spark_type(t), T.ArrayType)]
    csv_ready = rows.select([_pg_array_literal(c) if c in arrays else F.col(c) for c in rows.columns])
    copy_sql = 'COPY "{}" ({}) FROM STDIN (FORMAT csv)'.format(
        spec.name + STAGING, ", ".join(f'"{c}"' for c in rows.columns))  # names checked by _check_spec
    with _py4j_quiet():
        (csv_ready.coalesce(parallelism)
         .mapInArrow(_copy_partition(settings.dsn(), copy_sql), "rows long")
         .agg(F.sum("rows")).collect())


_LOADERS = {"copy": _load_copy, "jdbc": _load_jdbc}


def publish_table(df: DataFrame, spec: PgTable, settings: PgSettings, **kwargs) -> int:
    return publish(df, spec.name, settings, primary_key=spec.primary_key,
                   ddl_columns=spec.columns, indexes=spec.indexes, **kwargs)


def publish_recommendations(df: DataFrame, settings: PgSettings, **kwargs) -> int:
    return publish_table(df, RECOMMENDATIONS, settings, **kwargs)


def publish_movies(df: DataFrame, settings: PgSettings, **kwargs) -> int:
    return publish_table(df, MOVIES, settings, **kwargs)


def publish_popular(df: DataFrame, settings: PgSettings, **kwargs) -> int:
    return publish_table(df, POPULAR_MOVIES, settings, **kwargs)
