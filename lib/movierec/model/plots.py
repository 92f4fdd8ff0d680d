"""PNG plots for MLflow: people would rather look at these than read the tables."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def cv_results(cv: pd.DataFrame):
    """Mean CV score of every grid point, one panel per model."""
    models = list(dict.fromkeys(cv["model"]))
    fig, axes = plt.subplots(len(models), 1, figsize=(9, 2.6 * len(models)), squeeze=False)
    for ax, model in zip(axes[:, 0], models):
        part = cv[cv["model"] == model].groupby("params", sort=False)["value"].agg(["mean", "std"])
        ax.barh(part.index, part["mean"], xerr=part["std"].fillna(0), color="#4c72b0")
        ax.set_title(f"{model}: {cv[cv['model'] == model]['metric'].iloc[0]} (mean over folds)")
        ax.tick_params(axis="y", labelsize=7)
        lo, hi = part["mean"].min(), part["mean"].max()
        ax.set_xlim(lo - (hi - lo) * 0.5 - 1e-3, hi + (hi - lo) * 0.3 + 1e-3)
    fig.tight_layout()
    return fig


def metrics_vs_baselines(metrics: pd.DataFrame, k: int):
    """Test RMSE of the rating models and NDCG@k by population of the rankers."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    rmse = metrics[(metrics["metric"] == "rmse")].set_index("model")["value"].sort_values()
    left.barh(rmse.index, rmse.values, color="#dd8452")
    left.set_title("RMSE on warm test pairs (lower is better)")
    left.set_xlim(rmse.min() * 0.95, rmse.max() * 1.02)
    ndcg = (metrics[metrics["metric"] == "ndcg"]
            .pivot(index="model", columns="population", values="value"))
    ndcg.plot.barh(ax=right)
    right.set_title(f"NDCG@{k} on test users (higher is better)")
    fig.tight_layout()
    return fig


def rating_distribution(train: pd.DataFrame, test: pd.DataFrame):
    """Share of each rating value in train and test (inputs: rating, n)."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.2
    for offset, (name, df) in zip((-width / 2, width / 2), (("train", train), ("test", test))):
        share = df.set_index("rating")["n"] / df["n"].sum()
        ax.bar(share.index + offset, share.values, width=width, label=name)
    ax.set_xlabel("rating")
    ax.set_ylabel("share of ratings")
    ax.legend()
    fig.tight_layout()
    return fig


def serving_over_nights(history: pd.DataFrame):
    """The served lists' quality night by night (serving_metrics), one line per metric."""
    rates = history[~history["metric"].isin(["users", "arrived_ratings"])]
    wide = rates.pivot_table(index="run_date", columns="metric", values="value").sort_index()
    fig, ax = plt.subplots(figsize=(9, 4))
    wide.plot(ax=ax, marker="o")
    k = int(history["k"].iloc[0]) if len(history) else 0
    ax.set_title(f"Live lists scored on the ratings that arrived after them (@{k})")
    ax.set_xlabel("run date")
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    return fig
