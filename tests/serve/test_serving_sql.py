"""serving_sql.bind: the literal inlining Spark SQL needs for the cookbook's :name parameters."""

import pytest

from movierec.serve.serving_sql import bind


def test_bind_inlines_numbers_and_quotes_text():
    assert bind("select * from r where user_id = :user and title = :title",
                {"user": 7, "title": "Schindler's List"}) == \
        "select * from r where user_id = 7 and title = 'Schindler''s List'"


def test_bind_leaves_quoted_text_and_casts_alone():
    query = "select ':user' as label, 'it''s :user' as quote, x::int from t where id = :user"
    assert bind(query, {"user": 3}) == \
        "select ':user' as label, 'it''s :user' as quote, x::int from t where id = 3"


def test_bind_rejects_what_it_cannot_quote():
    with pytest.raises(TypeError, match="parameter user: list"):
        bind("select :user", {"user": [1]})
    with pytest.raises(KeyError):
        bind("select :missing", {})
