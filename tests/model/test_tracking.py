"""MLflow tracking on a real SQLite store: runs, artifacts, the champion gate, a dead server."""

from __future__ import annotations

import logging
import re
import socket
import time
import traceback
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from matplotlib.figure import Figure

from movierec.core.config import Config
from movierec.model import tracking

PASSWORD = "s3cr3t-pw"


class _Constant(mlflow.pyfunc.PythonModel):
    """A model that answers its own label, so a loaded champion shows which version it is."""

    def __init__(self, label: str):
        self.label = label

    def predict(self, context, model_input, params=None):
        return [self.label] * len(model_input)


@pytest.fixture(autouse=True)
def _isolated_mlflow(monkeypatch):
    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI to the process: keep tests apart.
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID",
                "MLFLOW_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    yield
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    # One SQLite file for the module: creating MLflow's schema takes seconds.
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture
def cfg(make_cfg, store, request):
    experiment = re.sub(r"\W", "_", request.node.name)
    return make_cfg(mlflow__tracking_uri=f"sqlite:///{store}/mlflow.db",
                    mlflow__artifact_root=str(store / "artifacts"),
                    mlflow__experiment=experiment)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_constant_model(label: str) -> str:
    info = mlflow.pyfunc.log_model(name="model", python_model=_Constant(label),
                                   pip_requirements=["mlflow"])  # no slow requirement inference
    return info.model_uri


# ---------------------------------------------------------------- the store


def test_tracking_uri_prefers_config_then_env_then_sqlite_under_root(make_cfg, tmp_path,
                                                                     monkeypatch):
    base = make_cfg()
    cfg = Config(base.settings, tmp_path, base.profile)
    assert tracking.tracking_uri(cfg) == f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    assert (tmp_path / "mlruns").is_dir()

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert tracking.tracking_uri(cfg) == "http://tracking.example:5000"

    cfg = cfg.with_overrides({"mlflow.tracking_uri": f"sqlite:///{tmp_path}/other/x.db"})
    assert tracking.tracking_uri(cfg) == f"sqlite:///{tmp_path}/other/x.db"
    assert (tmp_path / "other").is_dir()


def test_connect_creates_the_experiment_with_the_artifact_root(cfg, store):
    client = tracking.connect(cfg)
    experiment = client.get_experiment_by_name(cfg["mlflow.experiment"])
    assert experiment is not None and experiment.lifecycle_stage == "active"
    assert experiment.artifact_location == (store / "artifacts").resolve().as_uri()
    assert mlflow.get_tracking_uri() == cfg["mlflow.tracking_uri"]

    again = tracking.connect(cfg)  # idempotent
    assert again.get_experiment_by_name(cfg["mlflow.experiment"]).experiment_id == \
        experiment.experiment_id


def test_git_commit_is_unknown_outside_a_checkout(tmp_path):
    assert tracking.git_commit(tmp_path) == "unknown"


# ---------------------------------------------------------------- runs


def test_run_logs_tags_config_table_and_figure(cfg, store):
    table = pd.DataFrame({"model": ["als", "bias"], "ndcg_all": [0.31, 0.27]})
    fig = Figure()
    fig.add_subplot().plot([1, 2, 3], [3, 1, 2])

    with tracking.training_run(cfg, "2024-01-07", "train-2024-01-07",
                               tags={"trigger": "test"}) as run:
        tracking.log_config(cfg)
        tracking.log_table(table, "leaderboard")
        tracking.log_figure(fig, "ndcg_by_model")
        run_id = run.info.run_id

    client = mlflow.MlflowClient(cfg["mlflow.tracking_uri"])
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED"
    assert got.info.run_name == "train-2024-01-07"
    assert client.get_experiment(got.info.experiment_id).name == cfg["mlflow.experiment"]

    tags = got.data.tags
    assert tags["run_date"] == "2024-01-07"
    assert tags["profile"] == "test"
    assert tags["trigger"] == "test"
    assert tags["git_commit"] == tracking.git_commit(cfg.root)
    assert re.fullmatch(r"[0-9a-f]{40,64}|unknown", tags["git_commit"])

    params = got.data.params
    assert params["train.k"] == str(cfg["train.k"])
    assert params["train.als.rank_grid"] == str(cfg["train.als.rank_grid"])  # e.g. "[8, 16]"
    assert params["mlflow.experiment"] == cfg["mlflow.experiment"]
    assert params["spark.master"] == str(cfg["spark.master"])
    assert len(params) >= 30  # every leaf of the config, not a hand-picked few

    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "tables", "plots"} <= artifacts
    csv = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="tables/leaderboard.csv")
    pd.testing.assert_frame_equal(pd.read_csv(csv), table)
    png = Path(mlflow.artifacts.download_artifacts(run_id=run_id,
                                                   artifact_path="plots/ndcg_by_model.png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the files sit under mlflow.artifact_root, not under the working directory
    assert list((store / "artifacts").rglob("leaderboard.csv"))


def test_log_config_masks_credentials(cfg):
    leaky = cfg.with_overrides({"mlflow.tracking_uri": f"http://bob:{PASSWORD}@mlflow:5000"})
    with tracking.training_run(cfg, None, "masking") as run:
        tracking.log_config(leaky)
    client = mlflow.MlflowClient(cfg["mlflow.tracking_uri"])
    got = client.get_run(run.info.run_id)
    assert got.data.params["mlflow.tracking_uri"] == "http://bob:***@mlflow:5000"
    assert "run_date" not in got.data.tags
    config_yaml = mlflow.artifacts.load_text(f"{got.info.artifact_uri}/config.yaml")
    assert PASSWORD not in config_yaml and "bob:***@mlflow" in config_yaml


def test_run_ends_failed_when_the_block_raises(cfg):
    with pytest.raises(ValueError, match="boom"):
        with tracking.training_run(cfg, "2024-01-07", "doomed") as run:
            raise ValueError("boom")
    client = mlflow.MlflowClient(cfg["mlflow.tracking_uri"])
    assert client.get_run(run.info.run_id).info.status == "FAILED"
    assert mlflow.active_run() is None


# ---------------------------------------------------------------- the champion gate


def _metrics(value: float) -> pd.DataFrame:
    return pd.DataFrame([{"model": "ranker", "metric": "ndcg", "population": "all", "value": value},
                         {"model": "other", "metric": "ndcg", "population": "all", "value": 0.99}])


def _gate(cfg, label: str, value: float, log_table: bool = True,
          **kwargs) -> tuple[tracking.GateDecision, str]:
    client = tracking.connect(cfg)
    with tracking.training_run(cfg, "2024-01-07", f"train-{label}") as run:
        uri = _log_constant_model(label)
        if log_table:
            tracking.log_table(_metrics(value), "test_metrics")
        decision = tracking.register_and_gate(client, uri, "ranker-" + cfg["mlflow.experiment"],
                                              run.info.run_id, _metrics(value), model="ranker",
                                              primary="ndcg_all", **kwargs)
    return decision, run.info.run_id


def test_gate_moves_the_champion_only_for_a_strictly_better_model(cfg):
    name = "ranker-" + cfg["mlflow.experiment"]
    client = tracking.connect(cfg)

    first, _ = _gate(cfg, "first", 0.30)
    assert (first.moved, first.version, first.champion_version) == (True, "1", "1")
    assert first.old_value is None and "no champion yet" in first.reason

    worse, worse_run = _gate(cfg, "worse", 0.25)
    assert (worse.moved, worse.version, worse.champion_version) == (False, "2", "1")
    assert worse.old_value == pytest.approx(0.30)
    assert "0.25" in worse.reason and "0.3" in worse.reason and "champion stays v1" in worse.reason
    assert client.get_model_version(name, "2").tags["gate_reason"] == worse.reason
    assert client.get_model_version(name, "2").tags["ndcg_all"] == "0.25"
    assert client.get_run(worse_run).data.tags["champion_gate"] == worse.reason

    tie, _ = _gate(cfg, "tie", 0.30)
    assert (tie.moved, tie.champion_version) == (False, "1")

    better, better_run = _gate(cfg, "better", 0.35)
    assert (better.moved, better.version, better.champion_version) == (True, "4", "4")
    assert better.old_value == pytest.approx(0.30)
    assert "v4 becomes champion" in better.reason
    assert client.get_run(better_run).data.tags["champion_gate"] == better.reason

    assert str(client.get_model_version_by_alias(name, "champion").version) == "4"
    champion = mlflow.pyfunc.load_model(tracking.load_champion_uri(name))
    assert list(champion.predict(pd.DataFrame({"x": [1, 2]}))) == ["better", "better"]


def test_gate_lower_is_better_with_a_minimum_improvement(cfg):
    first, _ = _gate(cfg, "first", 1.00, higher_is_better=False, min_improvement=0.1)
    small, _ = _gate(cfg, "small", 0.95, higher_is_better=False, min_improvement=0.1)
    big, _ = _gate(cfg, "big", 0.80, higher_is_better=False, min_improvement=0.1)
    nan, _ = _gate(cfg, "nan", float("nan"), higher_is_better=False)
    assert [d.moved for d in (first, small, big, nan)] == [True, False, True, False]
    assert [d.champion_version for d in (first, small, big, nan)] == ["1", "1", "3", "3"]


def test_a_champion_without_a_metrics_table_is_compared_by_its_tag(cfg):
    old, _ = _gate(cfg, "old", 0.30, log_table=False)      # as versions registered before tables
    worse, _ = _gate(cfg, "worse", 0.25)
    better, _ = _gate(cfg, "better", 0.31)
    assert (old.moved, worse.moved, better.moved) == (True, False, True)
    assert worse.old_value == pytest.approx(0.30) and better.champion_version == "3"


def test_spark_model_registers_and_loads_as_champion(cfg, spark, store):
    from pyspark.ml.feature import StringIndexerModel

    # a real Spark ML model, built from its labels: fitting would only add a Spark job
    model = StringIndexerModel.from_labels(["c", "a", "b"], inputCol="genre",
                                           outputCol="prediction")
    name = "spark-" + cfg["mlflow.experiment"]
    client = tracking.connect(cfg)
    with tracking.training_run(cfg, "2024-01-07", "spark") as run:
        # MLflow 3.17's spark flavor still takes artifact_path= and returns a runs:/ URI
        info = mlflow.spark.log_model(model, artifact_path="model",
                                      pip_requirements=["pyspark"])  # skips a ~30 s inference
        decision = tracking.register_and_gate(client, info.model_uri, name, run.info.run_id,
                                              _metrics(0.2), model="ranker", primary="ndcg_all")
    assert decision.moved
    source = client.get_model_version(name, decision.version).source
    assert source.startswith((store / "artifacts").resolve().as_uri())

    loaded = mlflow.spark.load_model(tracking.load_champion_uri(name))
    df = spark.createDataFrame([(g,) for g in "abc"], ["genre"])
    got = {r.genre: r.prediction for r in loaded.transform(df).collect()}
    assert got == {"c": 0.0, "a": 1.0, "b": 2.0}


# ---------------------------------------------------------------- a dead server


def test_unreachable_server_fails_fast_and_hides_the_password(make_cfg, caplog):
    caplog.set_level(logging.DEBUG)
    port = _free_port()  # closed again: nothing listens there
    uri = f"http://alice:{PASSWORD}@127.0.0.1:{port}"
    cfg = make_cfg(mlflow__tracking_uri=uri, mlflow__timeout_s=3)

    start = time.monotonic()
    with pytest.raises(tracking.TrackingError) as caught:
        tracking.connect(cfg)
    assert time.monotonic() - start < 5

    message = str(caught.value)
    assert f"http://alice:***@127.0.0.1:{port}" in message
    assert PASSWORD not in "".join(traceback.format_exception(caught.value))
    assert PASSWORD not in caplog.text


def test_silent_server_times_out(make_cfg):
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        cfg = make_cfg(mlflow__tracking_uri=f"http://127.0.0.1:{port}", mlflow__timeout_s=2)
        start = time.monotonic()
        with pytest.raises(tracking.TrackingError, match=rf"127\.0\.0\.1:{port}.*2 s"):
            tracking.connect(cfg)
        assert time.monotonic() - start < 4
