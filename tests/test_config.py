import pytest

from movierec.config import ConfigError, load_config, parse_override


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
    with pytest.raises(ConfigError, match="split.batch_days"):
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
