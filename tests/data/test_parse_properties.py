"""Hostile ratings files of every layout against a plain-Python reference parser (hypothesis).

For each generated file: lines in the file = accepted + rejected, every reject has its line
number and a rule, and the accepted rows are exactly the reference's. The CI profile checks 3
derandomized files per layout; `HYPOTHESIS_PROFILE=long` many more (docs/reliability.md).
"""

from __future__ import annotations

import os
import re
from datetime import timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from movierec.core import tables as t
from movierec.data.ingest import count_by_rule, validate_file
from movierec.data.layouts import CSV, ML_1M, ML_10M, ML_100K, Layout
from movierec.data.parse import LINE, RULE
from movierec.data.source import OpenedSource

settings.register_profile("ci", max_examples=3, derandomize=True, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.register_profile("long", max_examples=150, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

MOVIES = {1, 2, 3, 5}
MIN_EPOCH, MAX_EPOCH = 788_918_400, 1_800_000_000   # 1995-01-01 and a fixed "now"
SEPARATOR = {"csv": ",", "dat": "::", "tsv": "\t"}
INT = re.compile(r"[+-]?[0-9]+")
DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


# --- the reference: what the ingest rules say, in plain Python --------------------------------

def _csv_fields(line: str) -> list[str] | None:
    """Fields of one CSV line: each quoted whole (a quote inside doubled) or free of quotes;
    None for a line that is not such a list."""
    fields, i, n = [], 0, len(line)
    while True:
        if line[i:i + 1] == '"':
            value, j = [], i + 1
            while True:
                k = line.find('"', j)
                if k < 0:
                    return None
                value.append(line[j:k])
                if line[k + 1:k + 2] != '"':
                    break
                value.append('"')
                j = k + 2
            fields.append("".join(value))
            i = k + 1
        else:
            k = i
            while k < n and line[k] not in ',"':
                k += 1
            if line[k:k + 1] == '"':
                return None
            fields.append(line[i:k])
            i = k
        if i == n:
            return fields
        if line[i] != ",":
            return None
        i += 1


def _number(text: str, grammar: re.Pattern, lo: float, hi: float, kind=int):
    text = text.strip(" ")
    if not grammar.fullmatch(text):
        return None
    value = kind(text)
    return value if lo <= value <= hi else None


def reference(data: bytes, layout: Layout, fmt: str, header: bool) -> dict[tuple[int, int], tuple]:
    """The accepted (user, movie) -> (rating, ts, line) of a ratings file."""
    accepted: dict[tuple[int, int], tuple] = {}
    for number, raw in enumerate(data.splitlines(), start=1):
        line = raw.decode("utf-8", errors="replace")
        if number == 1:
            if header:
                continue
            line = line.removeprefix("\ufeff")
        fields = _csv_fields(line) if fmt == "csv" else line.split(SEPARATOR[fmt])
        if fields is None or len(fields) != 4:
            continue
        user, movie = (_number(f, INT, 1, 2**31 - 1) for f in fields[:2])
        rating = _number(fields[2], DECIMAL, layout.rating_min, layout.rating_max, float)
        ts = _number(fields[3], INT, MIN_EPOCH, MAX_EPOCH)
        if None in (user, movie, rating, ts) or movie not in MOVIES:
            continue
        steps = rating / layout.rating_step
        if abs(steps - round(steps)) > 1e-6:
            continue
        if (user, movie) not in accepted or (ts, number) > accepted[(user, movie)][1:]:
            accepted[(user, movie)] = (rating, ts, number)
    return accepted


# --- hostile files ------------------------------------------------------------------------------

NASTY = ["", " ", '"', '""', '"4"0', "\x00", "\t", "\x01", "\x7f", "\u00e9", "\ufeff", "\xff", "1e0",
         "4e-0", ".5", "5.", "NaN", "nan", "Infinity", "-inf", "-0", "+3", "0", "-1", "2147483647",
         "2147483648", "99999999999999999999", "1d", "0x10", "1_0", " 7 ", "\t7", "7\x00", "\x007",
         "x" * 5000, "1,2", "1::2", "1\t2", "\u2028", "\u0085"]


def _value(kind: str) -> st.SearchStrategy[str]:
    good = {"id": st.sampled_from(["1", "2", "3", "4", "5", "007", "42"]),
            "rating": st.sampled_from(["0.5", "1", "1.0", "3.5", "4", "5.0", "5.5", "2.25", "3e0", '"4.0"']),
            "ts": st.sampled_from(["964982703", "1000000000", "1700000000", "700000000", "4000000000"])}[kind]
    return st.one_of(good, good, good, st.sampled_from(NASTY),
                     st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6))


_clean_row = st.tuples(st.sampled_from(["1", "2", "3", "4"]), st.sampled_from(["1", "2", "3", "5", "9"]),
                       st.sampled_from(["0.5", "1", "2.0", "3.5", "4", "5.0"]),
                       st.sampled_from(["964982703", "964982704", "1000000000"]), st.just(0))
_hostile_row = st.tuples(_value("id"), _value("id"), _value("rating"), _value("ts"),
                         st.sampled_from([0, 0, 0, 0, -1, 1]))   # fields missing or extra
_row = st.one_of(_clean_row, _hostile_row)


def _line(row: tuple, sep: str) -> bytes:
    *fields, extra = row
    fields = fields[:4 + extra] if extra < 0 else fields + ["9"] * extra
    return sep.join(fields).encode("utf-8", errors="surrogateescape")


_file = st.tuples(st.lists(st.tuples(_row, st.sampled_from([b"\n", b"\n", b"\r\n", b"\r"]),
                                     st.sampled_from([b"", b"", b"", b"\xff\xfe", b"\x00", b"\r\n"])),
                           min_size=4, max_size=16),
                  st.booleans())   # a BOM


LAYOUTS = [(CSV, "csv", "ratings.csv"), (ML_10M, "dat", "ratings.dat"), (ML_1M, "dat", "ratings.dat"),
           (ML_100K, "tsv", "u.data")]


@pytest.fixture(scope="module")
def movie_ids(spark):
    return spark.createDataFrame([(m,) for m in sorted(MOVIES)], f"{t.MOVIE_ID} int")


@pytest.mark.parametrize("layout, fmt, filename", LAYOUTS, ids=[lay.name for lay, _, _ in LAYOUTS])
def test_every_line_is_accepted_or_rejected_and_accepted_rows_match_the_reference(
        spark, tmp_path_factory, movie_ids, layout, fmt, filename):
    spec = layout.spec(t.RATINGS)
    checked = {"files": 0, "lines": 0, "accepted": 0}

    @settings(settings.get_profile(PROFILE))
    @given(_file)
    def check(generated):
        rows, bom = generated
        sep = SEPARATOR[fmt]
        body = b"".join(_line(row, sep) + junk + end for row, end, junk in rows)
        data = (b"\xef\xbb\xbf" if bom else b"") + (spec.header.encode() + b"\n" if spec.header else b"") + body
        folder = tmp_path_factory.mktemp(layout.name)
        (folder / filename).write_bytes(data)
        src = OpenedSource(folder, layout, folder, "x", {t.RATINGS: folder / filename})
        validated, n_lines = validate_file(spark, src, spec, min_epoch=MIN_EPOCH, max_epoch=MAX_EPOCH,
                                           movie_ids=movie_ids)
        counts, _ = count_by_rule(validated, n_lines, spec)   # raises unless read = accepted + rejected
        assert n_lines == len(data.splitlines()) - (1 if spec.header else 0)
        got = validated.select(LINE, RULE, t.USER_ID, t.MOVIE_ID, t.RATING, t.TS).collect()
        assert all(r[LINE] is not None for r in got) and len({r[LINE] for r in got}) == n_lines
        accepted = {(r.user_id, r.movie_id): (r.rating, int(r.ts.replace(tzinfo=timezone.utc).timestamp()), r[LINE])
                    for r in got if r[RULE] is None}
        assert accepted == reference(data, layout, fmt, spec.header is not None), data
        checked["files"] += 1
        checked["lines"] += n_lines
        checked["accepted"] += counts.accepted

    check()
    print(f"{layout.name}: {checked['files']} files, {checked['lines']} lines, {checked['accepted']} accepted")
