"""train_als end to end on the real ml-latest-small split, with a real MLflow SQLite store."""

from __future__ import annotations

import socket
from datetime import datetime, timezone

import mlflow
import numpy as np
import pytest

from movierec import delta_io, tables as t, tracking, train

from conftest import TRAIN_RUN_DATE as RUN_DATE


def test_every_model_is_evaluated_on_every_population(trained):
    _, first, _, _ = trained
    m = first.metrics
    rating = m[m.population == "warm_pairs"]
    assert set(rating.model) == {"global_mean", "bias", "als_plain", "als_biased"}
    assert set(rating.metric) == {"rmse", "mae", "n"}
    assert first.value("bias", "n", "warm_pairs") == 1167  # warm test pairs of the real split
    ranking = m[m.population != "warm_pairs"]
    assert set(ranking.model) == set(train.RANKERS)
    assert set(ranking.population) == {"all", "warm", "cold"}
    for model in train.RANKERS:
        users = {p: first.value(model, "users", p) for p in ("all", "warm", "cold")}
        assert users["warm"] + users["cold"] == users["all"] > 0
        for metric in ("precision", "recall", "ndcg", "map", "hit_rate"):
            assert 0.0 <= first.value(model, metric, "all") <= 1.0
    # models that cannot serve new users score nothing on them; the hybrid serves them the fallback
    assert first.value("als_implicit", "ndcg", "cold") == 0.0
    assert first.value("hybrid", "ndcg", "cold") == first.value("trending", "ndcg", "cold")
    # the baseline beats the global mean, and the bias terms are worth their keep
    assert first.value("bias", "rmse", "warm_pairs") < first.value("global_mean", "rmse", "warm_pairs")


def test_mlflow_run_holds_config_cv_metrics_plots_and_model(trained):
    cfg, first, _, _ = trained
    client = tracking.connect(cfg)   # also points the fluent API (load_text, load_model) here
    run = client.get_run(first.mlflow_run_id)
    assert run.data.tags["run_date"] == RUN_DATE and run.data.tags["git_commit"]
    assert "hybrid.ndcg_at_10.all" in run.data.metrics
    assert run.data.params["best.bias.damping_user"] in ("5.0", "25.0")
    names = {a.path for a in client.list_artifacts(first.mlflow_run_id)}
    assert {"tables", "plots", "model", "ranker", "best_params.json", "config.yaml"} <= names
    plots = {a.path for a in client.list_artifacts(first.mlflow_run_id, "plots")}
    assert plots == {"plots/cv_results.png", "plots/metrics_vs_baselines.png",
                     "plots/rating_distribution.png"}
    cv = mlflow.artifacts.load_text(f"runs:/{first.mlflow_run_id}/tables/cv_results.csv")
    assert cv.count("\n") - 1 == 2 * (4 + 1 + 1 + 1 + 2)  # folds x grid points of the test profile


def test_champion_is_set_once_and_a_rerun_changes_nothing(spark, trained):
    cfg, first, second, metrics_version = trained
    assert first.gate.moved and first.gate.champion_version == "1"
    assert not second.gate.moved and second.gate.champion_version == "1"
    assert "does not beat" in second.gate.reason
    # same data and seed: same numbers (Spark may sum partitions in another order: last bits only)
    a, b = first.metrics, second.metrics
    assert a[["model", "metric", "population"]].equals(b[["model", "metric", "population"]])
    assert np.allclose(a["value"], b["value"], rtol=1e-9, atol=1e-12, equal_nan=True)
    client = tracking.connect(cfg)   # also points the fluent API (load_text, load_model) here
    champion = client.get_model_version_by_alias(cfg["mlflow.model_name"], "champion")
    assert str(champion.version) == "1"
    model = mlflow.spark.load_model(tracking.load_champion_uri(cfg["mlflow.model_name"]))
    assert model.stages[0].rank == 16
    lake = cfg.path("lake")
    stored = delta_io.read(spark, lake, t.MODEL_METRICS)
    assert stored.count() == len(second.metrics)  # the rerun replaced its date, added nothing
    assert {r[0] for r in stored.select("mlflow_run_id").distinct().collect()} == {second.mlflow_run_id}
    assert delta_io.version(spark, lake, t.MODEL_METRICS) == metrics_version + 1


def test_missing_split_tells_which_job_to_run(spark, make_cfg):
    with pytest.raises(delta_io.MissingTableError, match="run `split` first"):
        train.run(spark, make_cfg(), RUN_DATE)


def test_tiny_train_set_is_a_clear_error(spark, make_cfg, lake):
    row = [(1, 1, 4.0, datetime(2020, 1, 1, tzinfo=timezone.utc))]
    for name in (t.RATINGS_TRAIN, t.RATINGS_TEST):
        delta_io.overwrite(spark.createDataFrame(row, t.SCHEMAS[t.RATINGS]), lake, name)
    with pytest.raises(train.TrainError, match="too few to train on"):
        train.run(spark, make_cfg(), RUN_DATE)


def test_unreachable_mlflow_fails_before_any_training(spark, trained):
    cfg, _, _, _ = trained
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bad = cfg.with_overrides({"mlflow.tracking_uri": f"http://127.0.0.1:{port}", "mlflow.timeout_s": 3})
    with pytest.raises(tracking.TrackingError, match=f"127.0.0.1:{port}"):
        train.run(spark, bad, RUN_DATE)
