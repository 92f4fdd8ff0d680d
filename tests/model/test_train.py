"""train_als on the real ml-latest-small split, as the suite's spark-submit pipeline ran it
(tests/conftest.py: pipeline_run), with a real MLflow SQLite store."""

from __future__ import annotations

import socket
from datetime import datetime, timezone

import mlflow
import pandas as pd
import pytest
from pyspark.sql import functions as F

from movierec.core import delta_io, tables as t
from movierec.model import tracking, train
from movierec.model.evaluate import value
from tests.helpers import PIPELINE_DATE as RUN_DATE

RATERS = {"global_mean", "bias", "als_plain", "als_biased"}
RANKERS = {"popular", "popular_recent", "trending", "als_plain", "als_biased", "als_implicit",
           "ease", "item_knn", "hybrid"}


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


def test_every_value_has_its_users_and_an_interval_and_each_ranker_its_gain_over_the_baseline(trained):
    cfg, _, m = trained
    per_user = m[m.metric.isin(["precision", "recall", "ndcg", "map", "hit_rate", "novelty", "diversity",
                                "new_share"])]
    users = m[m.metric == "users"].set_index(["model", "population"])["value"]
    for row in per_user.itertuples():
        if row.n == 0:   # e.g. the novelty of an explicit ALS's lists for cold users: it has none
            assert pd.isna(row.value) and pd.isna(row.ci_low), row
            continue
        assert row.ci_low - 1e-12 <= row.value <= row.ci_high + 1e-12, row
        # accuracy counts every evaluated user (no list scores 0); what a list shows is
        # undefined without one (or, for diversity, without two movies on it)
        if row.metric in ("novelty", "diversity", "new_share"):
            assert row.n <= users[row.model, row.population], row
        else:
            assert row.n == users[row.model, row.population], row
    baseline = cfg.train.baseline_model
    assert per_user[per_user.model == baseline].gain_low.isna().all()
    others = per_user[(per_user.model != baseline) & (per_user.population == "warm")]
    assert (others.baseline == baseline).all() and (others.gain_low <= others.gain_high).all()
    # the 16 warm users with a relevant test item (the README's caveat) carry the warm numbers
    assert users["hybrid", "warm"] == 16
    rmse = m[m.metric == "rmse"]
    assert (rmse.n == 1167).all() and ((rmse.ci_low <= rmse.value) & (rmse.value <= rmse.ci_high)).all()


def test_beyond_accuracy_metrics_are_in_range_and_no_list_holds_a_movie_train_never_saw(trained):
    _, _, m = trained
    v = lambda model, metric: value(m, model, metric, "all")  # noqa: E731
    for model in RANKERS:
        assert 0 < v(model, "coverage") <= 1 and 0 <= v(model, "gini") < 1
        assert v(model, "novelty") > 0 and 0 <= v(model, "diversity") <= 1
        # no model has factors or counts for a movie absent from train (issue 15's new_movies gap)
        assert v(model, "new_share") == 0.0
    # one list for everyone shows far fewer movies, more unequally, than a personal ranker
    assert v("popular", "coverage") < v("ease", "coverage")
    assert v("popular", "gini") > v("ease", "gini")
    assert v("popular", "novelty") < v("ease", "novelty")


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
