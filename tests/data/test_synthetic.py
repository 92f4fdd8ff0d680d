"""The synthetic MovieLens generator, on its small scale (plain pandas, no Spark)."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from movierec.data.synthetic import LEVELS, SCALES, T_FIRST, T_LAST, generate, shape_for

from tests.helpers import ROOT
FILES = ("ratings.csv", "movies.csv", "tags.csv", "links.csv", "README.txt")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    summary = generate(out, "small", seed=42)
    return out, summary


@pytest.fixture(scope="module")
def ratings(release):
    return pd.read_csv(release[0] / "ratings.csv", dtype={"rating": str})


def _bytes(folder):
    return {name: (folder / name).read_bytes() for name in FILES}


def test_headers(release):
    out, _ = release
    heads = {name: (out / name).open().readline() for name in FILES[:4]}
    assert heads == {
        "ratings.csv": "userId,movieId,rating,timestamp\n",
        "movies.csv": "movieId,title,genres\n",
        "tags.csv": "userId,movieId,tag,timestamp\n",
        "links.csv": "movieId,imdbId,tmdbId\n",
    }


def test_shape_and_summary(release, ratings):
    _, summary = release
    shape = SCALES["small"]
    assert len(ratings) == summary["n_ratings"] == shape.n_ratings
    assert ratings.userId.nunique() == summary["n_users"] == shape.n_users
    assert ratings.userId.min() == 1 and ratings.userId.max() == shape.n_users
    assert ratings.movieId.nunique() == summary["n_movies"] == shape.n_movies
    assert abs(sum(summary["rating_distribution"].values()) - 1) < 1e-3


def test_every_user_has_20_ratings_and_no_duplicates(ratings):
    assert ratings.groupby("userId").size().min() >= 20
    assert not ratings.duplicated(["userId", "movieId"]).any()


def test_rows_ordered_by_user_then_time(ratings):
    assert ratings.equals(ratings.sort_values(["userId", "timestamp"], kind="stable"))


def test_rating_levels_and_proportions(release, ratings):
    assert set(ratings.rating) <= set(LEVELS)  # read as text: "4.0", never "4" or "4.00"
    assert list(ratings.rating.value_counts().index[:4]) == ["4.0", "3.0", "5.0", "3.5"]
    share = ratings.rating.value_counts(normalize=True)
    assert share["4.0"] == pytest.approx(0.2656, abs=0.001)
    assert share["0.5"] == pytest.approx(0.0157, abs=0.001)


def test_timestamps_in_range_and_growing(ratings):
    assert ratings.timestamp.between(T_FIRST, T_LAST).all()
    year = pd.to_datetime(ratings.timestamp, unit="s").dt.year
    assert (year >= 2015).sum() > 2 * (year <= 1999).sum()
    assert (year >= 2015).sum() > (year.between(2005, 2009)).sum()


def test_deterministic_by_seed(release, tmp_path):
    out, _ = release
    generate(tmp_path / "same", "small", seed=42)
    generate(tmp_path / "other", "small", seed=7)
    assert _bytes(tmp_path / "same") == _bytes(out)
    assert (tmp_path / "other" / "ratings.csv").read_bytes() != (out / "ratings.csv").read_bytes()


def test_popularity_heavy_tailed(ratings):
    per_movie = ratings.movieId.value_counts()  # descending
    top = per_movie.iloc[: max(1, len(per_movie) // 100)].sum()
    assert top / len(ratings) > 0.10
    assert per_movie.median() < per_movie.mean() / 2
    per_user = ratings.groupby("userId").size()
    assert per_user.max() > 5 * per_user.median()


def test_movies_titles_genres_and_references(release, ratings):
    out, _ = release
    quoted = [line for line in (out / "movies.csv").read_text().splitlines() if '"' in line]
    assert quoted and all(', The (' in line for line in quoted)  # only titles with a comma are quoted
    movies = pd.read_csv(out / "movies.csv")
    assert list(movies.columns) == ["movieId", "title", "genres"] and movies.movieId.is_unique
    assert movies.title.str.fullmatch(r"Synthetic Movie \d+(, The)? \(\d{4}\)").all()
    assert movies.title.str.contains(",").any()
    assert (movies.genres == "(no genres listed)").any()
    genres = set(movies.genres.str.split("|").explode()) - {"(no genres listed)"}
    assert genres <= {"Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary",
                      "Drama", "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery",
                      "Romance", "Sci-Fi", "Thriller", "War", "Western"}
    assert set(ratings.movieId) <= set(movies.movieId) and len(movies) > ratings.movieId.nunique()


def test_tags_and_links(release, ratings):
    out, _ = release
    tags = pd.read_csv(out / "tags.csv")
    assert 0 < len(tags) < len(ratings) / 20
    rated = set(zip(ratings.userId, ratings.movieId))
    assert all(pair in rated for pair in zip(tags.userId, tags.movieId))
    assert tags.timestamp.between(T_FIRST, T_LAST).all()
    links = pd.read_csv(out / "links.csv", dtype={"imdbId": str})
    assert links.imdbId.str.fullmatch(r"\d{7}").all()
    assert links.tmdbId.isna().any() and links.tmdbId.notna().mean() > 0.99
    movies = pd.read_csv(out / "movies.csv")
    assert links.movieId.tolist() == movies.movieId.tolist()
    readme = (out / "README.txt").read_text()
    assert "SYNTHETIC" in readme and "seed: 42" in readme and "scale: small" in readme


def test_latent_structure_is_learnable(ratings):
    r = ratings.assign(r=ratings.rating.astype(float))
    test = np.random.default_rng(0).random(len(r)) < 0.2
    train, held = r[~test], r[test]
    mu = train.r.mean()
    # Damped means: biases of movies with few ratings shrink towards zero.
    b_movie = (train.r - mu).groupby(train.movieId).sum() / (train.groupby("movieId").size() + 5)
    resid = train.r - mu - train.movieId.map(b_movie)
    b_user = resid.groupby(train.userId).sum() / (train.groupby("userId").size() + 5)
    pred = mu + held.movieId.map(b_movie).fillna(0) + held.userId.map(b_user).fillna(0)
    rmse_global = np.sqrt(((held.r - mu) ** 2).mean())
    rmse_biases = np.sqrt(((held.r - pred) ** 2).mean())
    assert rmse_biases < 0.93 * rmse_global


def test_shape_for():
    assert shape_for("ml-25m") == SCALES["ml-25m"]
    assert shape_for("ml-25m").n_ratings == 25_000_095
    big = shape_for("5_000_000")
    assert big.n_ratings == 5_000_000 and big.n_users == round(5_000_000 * 162_541 / 25_000_095)
    assert shape_for(10_000).n_users * 20 <= 10_000
    with pytest.raises(ValueError):
        shape_for("huge")
    with pytest.raises(ValueError):
        shape_for(10)


def test_number_scale_and_cli(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "jobs" / "generate_synthetic.py"),
                          "--out", str(tmp_path), "--scale", "20000", "--seed", "3"],
                         capture_output=True, text=True, check=True)
    assert "stage pairs" in run.stderr  # progress is logged
    ratings = pd.read_csv(tmp_path / "ratings.csv")
    assert len(ratings) == 20_000 and ratings.groupby("userId").size().min() >= 20
