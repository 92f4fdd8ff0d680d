"""serving_sql.bind: the literal inlining Spark SQL needs for the cookbook's :name parameters,
proved by executing hostile values, not by comparing strings."""

import pytest

from movierec.serve.serving_sql import bind

HOSTILE = ["Schindler's List", "\\'", "\\", "' OR 1=1 --", "'; DROP TABLE movies; --", "\\' OR 'a'='a",
           "line\nbreak", "tab\there", "NUL\x00byte", "üñí©ødé 名前 🎬", "", "$${x}", ":user", "%s %(x)s"]


def test_spark_reads_back_every_hostile_text_exactly(spark):
    for value in HOSTILE:
        query = bind("SELECT :v AS v, length(:v) AS n, :k AS k", {"v": value, "k": 7})
        row = spark.sql(query).first()
        assert (row.v, row.n, row.k) == (value, len(value), 7), (value, query)


def test_spark_reads_back_numbers_exactly(spark):
    values = {"i": -2**31, "j": 2**40, "f": 0.1, "z": -0.0, "m": -5}
    row = spark.sql(bind("SELECT :i AS i, :j AS j, :f AS f, :z AS z, :m AS m, 3-:m AS d", values)).first()
    assert row.asDict() == {**values, "d": 8}   # "3--5" would have been 3 and a comment


def test_bind_leaves_quoted_text_and_casts_alone():
    query = "select ':user' as label, 'it''s :user' as quote, x::int from t where id = :user"
    assert bind(query, {"user": 3}) == \
        "select ':user' as label, 'it''s :user' as quote, x::int from t where id = 3"


def test_bind_rejects_what_it_cannot_quote():
    with pytest.raises(TypeError, match="parameter user: list"):
        bind("select :user", {"user": [1]})
    with pytest.raises(ValueError, match="parameter user: nan is not a SQL number"):
        bind("select :user", {"user": float("nan")})
    with pytest.raises(KeyError):
        bind("select :missing", {})
