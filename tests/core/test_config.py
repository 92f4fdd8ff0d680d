import pytest

from movierec.core.config import ConfigError, load_config, parse_override


def test_profile_overrides_base_and_set_overrides_profile():
    cfg = load_config("local", ["spark.shuffle_partitions=3", "split.train_frac=0.6"])
    assert cfg["spark.master"] == "local[2]"          # from local.yaml
    assert cfg["spark.shuffle_partitions"] == 3        # --set beats the profile
    assert cfg["split.train_frac"] == 0.6
    assert cfg["split.test_frac"] == 0.2               # untouched base value


def test_unknown_key_is_rejected_not_ignored():
    with pytest.raises(ConfigError, match="unknown config key 'split.train_fraction'"):
        load_config("local", ["split.train_fraction=0.5"])


def test_wrong_type_is_rejected():
    with pytest.raises(ConfigError, match="config key .split.batch_days.: input should be a valid integer"):
        load_config("local", ["split.batch_days=weekly"])


def test_fractions_must_leave_a_buffer():
    with pytest.raises(ConfigError, match="leave a buffer"):
        load_config("local", ["split.train_frac=0.8", "split.test_frac=0.2"])


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(ConfigError, match="unknown profile 'prod'.*local"):
        load_config("prod")


def test_every_profile_loads():
    for profile in ("local", "cluster", "ml25m", "test"):
        assert load_config(profile).profile == profile


def test_override_values_are_typed_by_yaml():
    assert parse_override("a.b=3") == ("a.b", 3)
    assert parse_override("a.b=local[2]") == ("a.b", "local[2]")
    assert parse_override("a.b=") == ("a.b", None)
    with pytest.raises(ConfigError):
        parse_override("novalue")


def test_relative_paths_resolve_from_the_project_root():
    cfg = load_config("local", ["lake=some/lake"])
    assert cfg.path("lake") == (cfg.root / "some" / "lake").resolve()


@pytest.mark.parametrize("override, message", [
    ("train.mode=fulll", "config key 'train.mode': input should be 'full' or 'refit', got 'fulll'"),
    ("train.schedule=nightly", "config key 'train.schedule': input should be 'always', 'on_drift' "
                               "or 'every_n_days', got 'nightly'"),
    ("train.primary_metric=ndcg", "config key 'train.primary_metric': input should be 'ndcg_all'"),
    ("spark.shuffle_partitions=0", "config key 'spark.shuffle_partitions': input should be greater than 0"),
    ("train.cv.val_frac=1.5", "config key 'train.cv.val_frac': input should be less than 1"),
    ("train.als.rank_grid=[]", "config key 'train.als.rank_grid': list should have at least 1 item"),
    ("synthetic.scale=huge", "config key 'synthetic.scale': input should be 'small', 'medium' or "
                             "'ml-25m' or input should be a valid integer"),
    # the lake's path reaches Spark SQL inside backticks: delta.`<path>`
    ("lake=/tmp/a`b", "config key 'lake': string should match pattern"),
    ("lake_lock_timeout_s=0", "config key 'lake_lock_timeout_s': input should be greater than 0"),
])
def test_bad_values_fail_at_load_with_the_key_and_what_it_allows(override, message):
    with pytest.raises(ConfigError) as caught:
        load_config("test", [override])
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_enum_values_read_as_their_strings():
    cfg = load_config("test", ["train.mode=refit", "synthetic.scale=20000"])
    assert cfg["train.mode"] == "refit" and f"{cfg.train.mode}" == "refit"
    assert cfg.synthetic.scale == 20000 and cfg["train.k"] == cfg.train.k == 10
    assert "mode: refit" in cfg.describe()


def test_with_overrides_validates_too():
    cfg = load_config("test")
    assert cfg.with_overrides({"recommend.k": 5}).recommend.k == 5
    with pytest.raises(ConfigError, match="recommend.k"):
        cfg.with_overrides({"recommend.k": -1})
    with pytest.raises(ConfigError, match="unknown config key 'recommend.kk'"):
        cfg.with_overrides({"recommend.kk": 5})


def test_the_logged_config_masks_credentials_in_every_uri():
    cfg = load_config("test", ["mlflow.tracking_uri=postgresql://ml:s3cr%40t@db:5432/mlflow",
                               "download.base_url=https://token123@files.example/ml"])
    text = cfg.describe()
    assert "postgresql://ml:***@db:5432/mlflow" in text and "https://***@files.example/ml" in text
    assert "s3cr" not in text and "token123" not in text
    assert cfg.mlflow.tracking_uri.endswith("s3cr%40t@db:5432/mlflow")   # the value itself is intact
