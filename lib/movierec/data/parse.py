"""Row-level parsing and validation of MovieLens files, as pure DataFrame transforms.

Every raw line stays in the output exactly once, with `rule` null when it is accepted, or the
first rule it breaks; accepting and quarantining are then two filters of the same rows, which
is what keeps raw = accepted + rejected true by construction.
"""

from __future__ import annotations

from functools import reduce

from pyspark.sql import Column as SCol
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from movierec.core import tables as t
from movierec.data.layouts import Column, FileSpec, Layout

RULE = "rule"
LINE = "line_number"
RAW = "raw"
PLAIN = "plain"

_SEPARATORS = {"dat": "::", "tsv": "\t", "pipe": "\\|"}
# A CSV field: quoted whole (a quote inside doubled) or without quotes. Possessive, so long
# fields cannot backtrack. A line that is not a list of such fields breaks column_count.
_CSV_FIELD = '"(?:[^"]++|"")*+"|[^,"]*+'
_CSV_LINE = f'(?s)\\A(?:{_CSV_FIELD})(?:,(?:{_CSV_FIELD}))*+\\z'
# Numbers as the files write them. Checked before the cast, which would also take ids and
# timestamps padded with control characters ("5\x00", "\t5") and NaN or Infinity ratings.
_INT = r"\A[+-]?[0-9]+\z"
_DECIMAL = r"\A[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\z"
_NO_GENRES = "(no genres listed)"
_YEAR_IN_TITLE = r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$"


# A field of a "plain" line, by column kind: digits only, short enough that the cast cannot
# overflow. A line of such fields alone (most lines of a ratings file) is typed by plain casts;
# every other line takes the full path, field grammar first. Kinds missing here have no plain form.
_PLAIN_FIELD = {"id": "[0-9]{1,9}", "ts": "[0-9]{1,18}", "rating": "[0-9]{1,3}(?:\\.[0-9]{1,9})?",
                "relevance": "[0-9](?:\\.[0-9]{1,9})?"}
_PLAIN_SEPARATOR = {"csv": ",", "dat": "::", "tsv": "\t", "pipe": "\\|"}


def plain_line(spec: FileSpec) -> str | None:
    """The regex of a line every field of which is a plain number, or None if the file has a
    field that cannot be one (text, genres)."""
    kinds = {c.index: c.kind for c in spec.columns}
    if sorted(kinds) != list(range(spec.n_fields)) or not all(k in _PLAIN_FIELD for k in kinds.values()):
        return None
    fields = _PLAIN_SEPARATOR[spec.fmt].join(_PLAIN_FIELD[kinds[i]] for i in range(spec.n_fields))
    return f"\\A{fields}\\z"


def split_fields(lines: DataFrame, spec: FileSpec) -> DataFrame:
    """(line_number, raw) -> adds `fields` (array<string>), `n_found` (fields on the line) and
    `plain` (every field a plain number: the typing skips their grammar)."""
    raw = F.col(RAW)
    pattern = plain_line(spec)
    plain = raw.rlike(pattern) if pattern else F.lit(False)
    if spec.fmt != "csv":
        fields = F.split(raw, _SEPARATORS[spec.fmt], -1)
        return lines.withColumn("fields", fields).withColumn("n_found", F.size(fields)).withColumn(PLAIN, plain)
    # Most lines hold no quote: a plain split. The others are taken field by field, each field
    # starting at the line's start or right after a comma (found, not consumed, so that an empty
    # field is found too).
    quoted = F.instr(raw, '"') > 0
    parts = F.when(quoted, F.regexp_extract_all(raw, F.lit(f"(?s)(?<![^,])({_CSV_FIELD})"), F.lit(1))
                   ).otherwise(F.split(raw, ",", -1))
    unquoted = F.transform(parts, lambda f: F.when(
        f.startswith('"'), F.regexp_replace(F.regexp_extract(f, '(?s)\\A"(.*)"\\z', 1), '""', '"')
    ).otherwise(f))
    fields = F.when(plain, F.split(raw, ",", -1)).otherwise(unquoted)
    n_found = F.when(plain, F.lit(spec.n_fields)).when(quoted & ~raw.rlike(_CSV_LINE), F.lit(-1)) \
        .otherwise(F.size(parts))
    return lines.withColumn("fields", fields).withColumn("n_found", n_found).withColumn(PLAIN, plain)


def _field(i: int) -> SCol:
    return F.get(F.col("fields"), i)


def _number(raw: SCol, grammar: str, to: str) -> SCol:
    """The field as a number if, trimmed of spaces, it is one by `grammar`; else null. On a
    plain line it is one already."""
    text = F.trim(raw)
    return F.when(F.col(PLAIN), raw.cast(to)).when(text.rlike(grammar), text.try_cast(to))


def _is_blank(c: SCol) -> SCol:
    return c.isNull() | (F.trim(c) == "")


def quarantined_raw() -> list[SCol]:
    """A rejected line as text every Delta reader can decode (`raw_line`: invalid UTF-8
    sequences replaced by U+FFFD, as pyarrow and pandas refuse the whole column otherwise) and,
    only when something had to be replaced, its exact bytes (`raw_bytes`)."""
    raw = F.col(RAW)
    return [F.make_valid_utf8(raw).alias("raw_line"),
            F.when(~F.is_valid_utf8(raw), raw.cast("binary")).alias("raw_bytes")]


def _value(col: Column, genres: tuple[str, ...]) -> SCol:
    """One column's value as parsed, before its rules (a timestamp column: its seconds)."""
    raw = _field(col.index)
    if col.kind in ("id", "int_opt"):
        return _number(raw, _INT, "int")
    if col.kind == "ts":
        return _number(raw, _INT, "long")
    if col.kind in ("rating", "relevance"):
        return _number(raw, _DECIMAL, "double")
    if col.kind in ("text", "imdb"):
        return F.trim(raw)
    if col.kind == "genres":
        return F.when(_is_blank(raw) | (F.trim(raw) == _NO_GENRES), F.array().cast("array<string>")
                      ).otherwise(F.split(F.trim(raw), "\\|"))
    if col.kind == "genre_flags":
        named = F.array(*[F.when(_field(col.index + k) == "1", F.lit(g)) for k, g in enumerate(genres)])
        return F.filter(named, lambda g: g.isNotNull() & (g != "unknown"))
    raise ValueError(f"unknown column kind {col.kind!r}")


def _rule(col: Column, v: SCol, layout: Layout, limits: dict, genres: tuple[str, ...]) -> SCol:
    """The rule that column breaks, given its parsed value `v` (null when it breaks none)."""
    raw = _field(col.index)
    name = col.name
    if col.kind == "id":
        return F.when(v.isNull(), f"unparseable:{name}").when(v <= 0, f"non_positive_id:{name}")
    if col.kind == "int_opt":
        return F.when(~_is_blank(raw) & v.isNull(), f"unparseable:{name}")
    if col.kind == "rating":
        steps = v / F.lit(layout.rating_step)
        return (F.when(v.isNull(), "unparseable:rating")
                .when((v < layout.rating_min) | (v > layout.rating_max), "rating_out_of_range")
                .when(F.abs(steps - F.round(steps)) > 1e-6, "rating_off_step"))
    if col.kind == "ts":
        return (F.when(v.isNull(), f"unparseable:{name}")
                .when((v < limits["min_epoch"]) | (v > limits["max_epoch"]), "timestamp_out_of_range"))
    if col.kind == "text":
        return F.when(_is_blank(raw), f"empty:{name}")
    if col.kind == "genres":
        return F.lit(None).cast("string")
    if col.kind == "genre_flags":
        flags = [_field(col.index + k) for k in range(len(genres))]
        bad = reduce(lambda a, b: a | b, [~f.isin("0", "1") | f.isNull() for f in flags])
        return F.when(bad, f"unparseable:{name}")
    if col.kind == "relevance":
        return F.when(v.isNull(), "unparseable:relevance").when((v < 0) | (v > 1), "relevance_out_of_range")
    if col.kind == "imdb":
        return F.when(~v.rlike("^[0-9]+$") | raw.isNull(), f"unparseable:{name}")
    raise ValueError(f"unknown column kind {col.kind!r}")


def type_columns(fields: DataFrame, spec: FileSpec, layout: Layout, *, min_epoch: int,
                 max_epoch: int, genres: tuple[str, ...] = ()) -> DataFrame:
    """Adds the spec's typed columns and `rule`: column_count first, then each column's rules.

    Values are parsed in one projection and judged in the next: written as one expression,
    every rule would parse its value again (Spark does not share a subexpression that only some
    branches of a CASE evaluate), which cost 14 s of 25M ratings' 26 s of typing."""
    limits = {"min_epoch": min_epoch, "max_epoch": max_epoch}
    parsed = fields.select(LINE, RAW, "fields", "n_found",
                           *[_value(c, genres).alias(c.name) for c in spec.columns])
    rules = {c.name: _rule(c, F.col(c.name), layout, limits, genres) for c in spec.columns}
    rule = F.coalesce(F.when(F.col("n_found") != spec.n_fields, "column_count"), *rules.values())
    # Guarded: out-of-range seconds would overflow the timestamp under ANSI mode.
    typed = [F.when(rules[c.name].isNull(), F.timestamp_seconds(c.name)).alias(c.name) if c.kind == "ts"
             else F.col(c.name) for c in spec.columns]
    out = parsed.select(LINE, RAW, *typed, rule.alias(RULE))
    if spec.table == t.MOVIES:
        year = F.regexp_extract(F.col(t.TITLE), _YEAR_IN_TITLE, 1)
        out = out.withColumn(t.YEAR, F.when(year != "", year.cast("int")))
    return out


def reject_unknown_movies(rows: DataFrame, movie_ids: DataFrame) -> DataFrame:
    """Marks accepted rows whose movie_id is not among `movie_ids` (a one-column frame)."""
    known = movie_ids.select(F.col(t.MOVIE_ID), F.lit(True).alias("_known")).distinct()
    joined = rows.join(F.broadcast(known), on=t.MOVIE_ID, how="left")
    rule = F.coalesce(F.col(RULE), F.when(F.col("_known").isNull(), F.lit("unknown_movie")))
    return joined.withColumn(RULE, rule).drop("_known")


def reject_duplicates(rows: DataFrame, key: tuple[str, ...]) -> DataFrame:
    """Among accepted rows sharing `key`, keeps the latest (by ts, then line) and marks the rest."""
    order = [F.col(t.TS).desc()] if t.TS in rows.columns else []
    w = Window.partitionBy(F.col(RULE).isNull(), *key).orderBy(*order, F.col(LINE).desc())
    rank = F.row_number().over(w)
    return rows.withColumn(
        RULE, F.coalesce(F.col(RULE), F.when(rank > 1, F.lit("duplicate"))))
