from movierec.core.masking import mask_uri, masked


def test_mask_uri_hides_passwords_and_tokens():
    assert mask_uri("http://bob:pw@host:5000/x") == "http://bob:***@host:5000/x"
    assert mask_uri("https://tok3n@host") == "https://***@host"
    # an "@" in the password: all of it is hidden (SQLAlchemy's URL would print "ss@db")
    assert mask_uri("postgresql://u:p@ss@db/mlflow") == "postgresql://u:***@db/mlflow"
    assert mask_uri("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"
    assert mask_uri("failed: could not reach http://a:b@h:1 (timeout)") == \
        "failed: could not reach http://a:***@h:1 (timeout)"


def test_masked_walks_nested_config():
    data = {"a": {"uri": "http://u:pw@h", "n": 3, "list": ["https://t@x", None]}}
    assert masked(data) == {"a": {"uri": "http://u:***@h", "n": 3, "list": ["https://***@x", None]}}
    assert data["a"]["uri"] == "http://u:pw@h"   # a copy: the config itself keeps its value
