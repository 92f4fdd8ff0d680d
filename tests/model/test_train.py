"""train_als on the real ml-latest-small split, as the suite's spark-submit pipeline ran it
(tests/conftest.py: pipeline_run), with a real MLflow SQLite store."""

from __future__ import annotations

import socket
from datetime import datetime, timezone

import mlflow
import pytest
from pyspark.sql import functions as F

from movierec.core import delta_io, tables as t
from movierec.model import tracking, train
from movierec.model.evaluate import value
from tests.helpers import PIPELINE_DATE as RUN_DATE

RATERS = {"global_mean", "bias", "als_plain", "als_biased"}
RANKERS = {"popular", "popular_recent", "trending", "als_plain", "als_biased", "als_implicit", "hybrid"}


@pytest.fixture(scope="module")
def trained(spark, pipeline_run):
    """The pipeline's training run: its config, MLflow run id and test metrics table."""
    stored = delta_io.read(spark, pipeline_run.lake, t.MODEL_METRICS)
    metrics = stored.where(F.col(t.RUN_DATE) == RUN_DATE).toPandas()
    run_ids = set(metrics.mlflow_run_id)
    assert len(run_ids) == 1, run_ids
    return pipeline_run.cfg, run_ids.pop(), metrics


def test_every_model_is_evaluated_on_every_population(trained):
    _, _, m = trained
    v = lambda model, metric, population: value(m, model, metric, population)  # noqa: E731
    rating = m[m.population == "warm_pairs"]
    assert set(rating.model) == RATERS
    assert set(rating.metric) == {"rmse", "mae", "n"}
    assert v("bias", "n", "warm_pairs") == 1167  # warm test pairs of the real split
    ranking = m[m.population != "warm_pairs"]
    assert set(ranking.model) == RANKERS
    assert set(ranking.population) == {"all", "warm", "cold"}
    for model in RANKERS:
        users = {p: v(model, "users", p) for p in ("all", "warm", "cold")}
        assert users["warm"] + users["cold"] == users["all"] > 0
        for metric in ("precision", "recall", "ndcg", "map", "hit_rate"):
            assert 0.0 <= v(model, metric, "all") <= 1.0
    # models that cannot serve new users score nothing on them; the hybrid serves them the fallback
    assert v("als_implicit", "ndcg", "cold") == 0.0
    assert v("hybrid", "ndcg", "cold") == pytest.approx(v("trending", "ndcg", "cold"), abs=1e-12)
    # the baseline beats the global mean, and the bias terms are worth their keep
    assert v("bias", "rmse", "warm_pairs") < v("global_mean", "rmse", "warm_pairs")


def test_mlflow_run_holds_config_cv_metrics_plots_and_model(trained):
    cfg, run_id, _ = trained
    client = tracking.connect(cfg)   # also points the fluent API (load_text, load_model) here
    run = client.get_run(run_id)
    assert run.data.tags["run_date"] == RUN_DATE and run.data.tags["git_commit"]
    assert "hybrid.ndcg_at_10.all" in run.data.metrics
    assert run.data.params["best.bias.damping_user"] in ("5.0", "25.0")
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"tables", "plots", "model", "ranker", "best_params.json", "config.yaml"} <= names
    plots = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert plots == {"plots/cv_results.png", "plots/metrics_vs_baselines.png",
                     "plots/rating_distribution.png"}
    cv = mlflow.artifacts.load_text(f"runs:/{run_id}/tables/cv_results.csv")
    # folds x grid points of the test profile; the ALS models have one point: not cross-validated
    assert cv.count("\n") - 1 == 1 * (4 + 2)
    best = mlflow.artifacts.load_dict(f"runs:/{run_id}/best_params.json")
    assert set(best) == RATERS | RANKERS   # every model's parameters, for the nightly refit
    assert best["trending"] == {"half_life_days": best["hybrid"]["half_life_days"]}


def test_the_first_training_becomes_champion(trained, pipeline_run):
    cfg, run_id, _ = trained
    assert "v1 becomes champion: no champion yet" in pipeline_run.output
    client = tracking.connect(cfg)   # also points the fluent API (load_text, load_model) here
    champion = client.get_model_version_by_alias(cfg["mlflow.model_name"], "champion")
    assert (str(champion.version), champion.run_id) == ("1", run_id)
    assert champion.tags["gate_reason"].startswith("v1 becomes champion")
    model = mlflow.spark.load_model(tracking.load_champion_uri(cfg["mlflow.model_name"]))
    assert model.stages[0].rank == 16   # the test profile's implicit rank
    # the backtest scored the train-only fit; the served one learned train and test: 70,585 + 20,167
    run = client.get_run(run_id)
    assert run.data.metrics["served.training_ratings"] == 90_752
    assert run.data.tags["served.known_as_of"] == RUN_DATE
    assert run.data.metrics["served.training_users"] == 563


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
    cfg, _, _ = trained
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bad = cfg.with_overrides({"mlflow.tracking_uri": f"http://127.0.0.1:{port}", "mlflow.timeout_s": 3})
    with pytest.raises(tracking.TrackingError, match=f"127.0.0.1:{port}"):
        train.run(spark, bad, RUN_DATE)
