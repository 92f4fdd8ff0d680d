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


def test_mask_uri_hides_secrets_in_query_parameters():
    # libpq and SQLAlchemy take a password as a query parameter too; object stores sign URLs
    assert mask_uri("postgresql://u:p@h/db?sslmode=require&password=s3cret") == \
        "postgresql://u:***@h/db?sslmode=require&password=***"
    assert mask_uri("https://acct.blob.core.windows.net/c?sv=2022&sig=abc%2Fdef&se=1") == \
        "https://acct.blob.core.windows.net/c?sv=2022&sig=***&se=1"
    assert mask_uri("http://h:5000/?access_token=t0k&x=1 and more") == \
        "http://h:5000/?access_token=***&x=1 and more"
    assert mask_uri("https://h/x?Token=a;API_KEY=b") == "https://h/x?Token=***;API_KEY=***"
    assert mask_uri("https://h/x?page=2&keyword=ok") == "https://h/x?page=2&keyword=ok"


def test_the_job_start_config_dump_masks_every_uri():
    from movierec.core.config import load_config

    cfg = load_config("test", ["mlflow.tracking_uri=postgresql://ml:pw1@db:5432/mlflow?password=pw2",
                               "download.base_url=https://tok@files.example/ml?sig=pw3"])
    dump = cfg.describe()
    assert "ml:***@db:5432/mlflow?password=***" in dump and "https://***@files.example/ml?sig=***" in dump
    assert not any(secret in dump for secret in ("pw1", "pw2", "pw3", "tok@"))
