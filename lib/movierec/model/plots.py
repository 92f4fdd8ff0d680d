"""PNG plots for MLflow: people would rather look at these than read the tables."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from movierec.model.evaluate import beyond_noise  # noqa: E402


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
    """Test RMSE of the rating models, NDCG@k by population of the rankers, and their
    beyond-accuracy metrics, each bar with its 95% bootstrap interval over users; a ranker whose
    NDCG differs from the baseline's beyond noise is marked *."""
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.5))
    left, middle, right = axes
    rmse = metrics[metrics["metric"] == "rmse"].set_index("model").sort_values("value")
    if len(rmse):
        left.barh(rmse.index, rmse["value"], xerr=_errors(rmse), color="#dd8452", capsize=3)
        left.set_xlim(rmse["ci_low"].min() * 0.97, rmse["ci_high"].max() * 1.02)
    left.set_title("RMSE on warm test pairs (lower is better)")
    ndcg = metrics[metrics["metric"] == "ndcg"]
    pops = list(dict.fromkeys(ndcg["population"]))
    models = list(dict.fromkeys(ndcg["model"]))
    height = 0.8 / max(1, len(pops))
    for i, pop in enumerate(pops):
        part = ndcg[ndcg["population"] == pop].set_index("model").reindex(models)
        middle.barh([m + i * height for m in range(len(models))], part["value"], height=height,
                    xerr=_errors(part), capsize=2, label=f"{pop} (n={int(part['n'].max())})")
    middle.set_yticks([m + height * (len(pops) - 1) / 2 for m in range(len(models))])
    noisy = ndcg[ndcg["population"] == "warm"].set_index("model").reindex(models)
    middle.set_yticklabels([f"{m} *" if beyond_noise(noisy.loc[m]) else m for m in models])
    middle.set_title(f"NDCG@{k} on test users, 95% intervals (* warm: beyond noise vs baseline)")
    middle.legend(fontsize=7)
    wide = (metrics[metrics["metric"].isin(["coverage", "gini", "novelty", "diversity", "new_share"])
                    & (metrics["population"] == "all")]
            .pivot(index="model", columns="metric", values="value"))
    if len(wide):
        (wide / wide.max().where(wide.max() > 0, 1)).plot.barh(ax=right)
    right.set_title("beyond accuracy, all test users (metric / its max)")
    right.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _errors(part: pd.DataFrame):
    """xerr for bars at `value` from the ci_low/ci_high columns (0 where unknown)."""
    return [(part["value"] - part["ci_low"]).fillna(0).clip(lower=0).to_numpy(),
            (part["ci_high"] - part["value"]).fillna(0).clip(lower=0).to_numpy()]


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
