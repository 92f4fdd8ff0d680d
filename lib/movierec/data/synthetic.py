"""A synthetic MovieLens release in the ml-25m CSV layout, generated deterministically from a seed.

Real MovieLens data may not be redistributed, and tests and benchmarks need releases of any
size, so this draws one that has ML-25M's shape: heavy-tailed user activity and movie
popularity, at least 20 ratings per user, ML-25M's exact rating histogram, growth over time,
and ratings from a latent-factor model so that a recommender has something to learn.
Everything is vectorised numpy: ml-25m scale takes about 25 s and 1.5 GiB on 2 cores.
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from movierec.core.logs import stage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shape:
    n_users: int
    n_movies: int   # movies with at least one rating; movies.csv lists a few more
    n_ratings: int


ML25M = Shape(162_541, 59_047, 25_000_095)
SCALES = {
    "small": Shape(2_000, 3_000, 100_000),
    "medium": Shape(20_000, 15_000, 2_000_000),
    "ml-25m": ML25M,
}

# ML-25M's own figures, so that every scale looks like a shrunken ML-25M.
ML25M_LISTED_MOVIES = 62_423
ML25M_MAX_MOVIE_ID = 209_171
T_FIRST, T_LAST = 789_652_009, 1_574_327_703  # 1995-01-09 .. 2019-11-21, ML-25M's first and last
LEVELS = ("0.5", "1.0", "1.5", "2.0", "2.5", "3.0", "3.5", "4.0", "4.5", "5.0")
LEVEL_COUNTS = np.array([393_068, 776_815, 399_490, 1_640_868, 1_262_797,
                         4_896_928, 3_177_318, 6_639_798, 2_200_539, 3_612_474])  # ML-25M, per level
GENRES = ("Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi",
          "Thriller", "War", "Western")
GENRE_SHARE = np.array([.12, .07, .05, .04, .27, .08, .09, .40, .04, .006, .09, .003, .02, .04,
                        .12, .06, .14, .03, .02])  # roughly ML-25M's share of movies per genre
NO_GENRES = "(no genres listed)"
TAG_WORDS = ("atmospheric", "twist ending", "sci-fi", "dark comedy", "funny", "visually appealing",
             "based on a book", "thought-provoking", "surreal", "classic", "great soundtrack",
             "time travel", "dystopia", "quirky", "World War II", "nonlinear", "cinematography",
             "philosophical", "Disney", "animation", "social commentary", "cult film", "satire",
             "Oscar (Best Picture)", "imdb top 250", "In Netflix queue", "stylized", "violence",
             "true story", "aliens", "superhero", "psychology", "romance", "predictable",
             "good, not great", "slow, but worth it")

MIN_RATINGS = 20        # MovieLens only releases users with at least 20 ratings
USER_SPREAD = 1.4       # lognormal sigma of activity: ML-25M's median is 71 ratings, mean 154
ZIPF_EXPONENT = 2.0     # with the offset below: ML-style long tail, median movie ~17 ratings at ml-25m
GROWTH = np.log(8.0)    # sign-ups grow 8-fold from 1995 to 2019
N_FACTORS = 8
DAY = 86_400
CHUNK = 2_000_000       # rows per vectorised chunk, bounding the memory of per-row temporaries


def shape_for(scale: str | int) -> Shape:
    """A preset name, or a number of ratings with users and movies scaled by ML-25M's ratios."""
    if isinstance(scale, str) and scale in SCALES:
        return SCALES[scale]
    try:
        n = int(float(str(scale).replace("_", "")))
    except ValueError:
        raise ValueError(f"unknown scale {scale!r}: use {', '.join(SCALES)} or a number of ratings") from None
    if n < 1_000:
        raise ValueError(f"scale {n:,} is too small: at least 1,000 ratings")
    users = max(20, round(n * ML25M.n_users / ML25M.n_ratings))
    # Below ML-25M's size, scaling movies down too would make the matrix implausibly dense.
    movies = max(round(n * ML25M.n_movies / ML25M.n_ratings), min(3_000, n // 5))
    return Shape(users, movies, n)


def _check(shape: Shape) -> None:
    cap = shape.n_movies // 2
    if not (shape.n_users * MIN_RATINGS <= shape.n_ratings <= shape.n_users * cap
            and shape.n_movies <= shape.n_ratings and cap >= MIN_RATINGS):
        raise ValueError(f"{shape} cannot give every user {MIN_RATINGS}..{cap} ratings and every movie one")


def _proportional(total: int, weights: np.ndarray) -> np.ndarray:
    """Integers proportional to weights that sum to total exactly (largest remainders)."""
    share = weights / weights.sum() * total
    out = np.floor(share).astype(np.int64)
    out[np.argsort(out - share, kind="stable")[: total - out.sum()]] += 1
    return out


def _user_counts(rng: np.random.Generator, shape: Shape) -> np.ndarray:
    weight = rng.lognormal(0.0, USER_SPREAD, shape.n_users)
    cap = shape.n_movies // 2  # ML-25M's most active user rated about half of all movies
    counts = np.full(shape.n_users, MIN_RATINGS, dtype=np.int64)
    while (left := shape.n_ratings - counts.sum()) > 0:  # a few passes: capped users pass on their excess
        counts += np.minimum(_proportional(left, weight * (counts < cap)), cap - counts)
    return counts


def _movies(rng: np.random.Generator, shape: Shape) -> dict:
    n_listed = shape.n_movies + round(shape.n_movies * (ML25M_LISTED_MOVIES - ML25M.n_movies) / ML25M.n_movies)
    max_id = max(n_listed, round(n_listed * ML25M_MAX_MOVIE_ID / ML25M_LISTED_MOVIES))
    ids = np.sort(rng.choice(max_id, n_listed, replace=False) + 1).astype(np.int32)
    # The movies nobody rated are mostly the latest additions, i.e. the highest ids.
    late = np.arange(1, n_listed + 1, dtype=np.float64) ** 4
    unrated = rng.choice(n_listed, n_listed - shape.n_movies, replace=False, p=late / late.sum())
    rated = np.setdiff1d(np.arange(n_listed), unrated)

    no_genres = rng.random(n_listed) < 0.03
    mask = rng.random((n_listed, len(GENRES))) < GENRE_SHARE
    empty = ~mask.any(axis=1) & ~no_genres
    mask[empty, rng.choice(len(GENRES), n_listed, p=GENRE_SHARE / GENRE_SHARE.sum())[empty]] = True
    mask[no_genres] = False
    rows, cols = np.nonzero(mask)  # row-major, so each movie's genres come out alphabetically, as in MovieLens
    offsets = np.concatenate([[0], np.cumsum(mask.sum(axis=1))]).astype(np.int32)
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, pa.array(np.array(GENRES)[cols])), "|")
    genres = pc.if_else(pa.array(no_genres), NO_GENRES, joined)

    years = np.clip(2019 - rng.exponential(18.0, n_listed).astype(np.int64), 1902, 2019)
    # MovieLens moves a leading article behind the name ("American President, The (1995)").
    article = np.where(rng.random(n_listed) < 0.06, ", The", "")
    titles = pc.binary_join_element_wise(
        "Synthetic Movie ", pc.cast(pa.array(ids), pa.string()), pa.array(article),
        " (", pc.cast(pa.array(years), pa.string()), ")", "")

    imdb = np.sort(rng.choice(9_999_999, n_listed, replace=False) + 1)
    tmdb = rng.choice(700_000, n_listed, replace=False) + 1
    no_tmdb = np.zeros(n_listed, dtype=bool)
    no_tmdb[rng.choice(n_listed, max(1, round(n_listed * 0.002)), replace=False)] = True
    return {"ids": ids, "rated": rated, "genre_mask": mask, "titles": titles, "genres": genres,
            "imdb": pc.utf8_lpad(pc.cast(pa.array(imdb), pa.string()), 7, "0"),
            "tmdb": pa.array(tmdb, mask=no_tmdb)}


def _popularity(n_movies: int, top_share: float, rng: np.random.Generator) -> np.ndarray:
    """Zipf-Mandelbrot weights (rank + r0) ** -s, in random movie order, with r0 chosen so the
    most popular movie takes top_share of draws: ML-25M's top movie is rated by half the users."""
    rank = np.arange(1, n_movies + 1, dtype=np.float64)
    lo, hi = 0.0, float(n_movies)
    for _ in range(50):
        r0 = (lo + hi) / 2
        w = (rank + r0) ** -ZIPF_EXPONENT
        lo, hi = (r0, hi) if w[0] / w.sum() > top_share else (lo, r0)
    return (w / w.sum())[rng.permutation(n_movies)]


def _pairs(rng: np.random.Generator, counts: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Distinct (user, movie) pairs as sorted keys user * n_movies + movie: each user gets counts[u]
    movies drawn by popularity without replacement, and every movie gets at least one user."""
    n_users, n_movies = len(counts), len(p)
    # Every movie first goes to a random rating slot, so all of them are rated.
    slot_user = np.repeat(np.arange(n_users, dtype=np.int64), counts)
    keys = np.sort(slot_user[rng.choice(len(slot_user), n_movies, replace=False)] * n_movies
                   + rng.permutation(n_movies))
    del slot_user
    cdf = np.cumsum(p)
    cdf[-1] = 1.0
    have = np.bincount(keys // n_movies, minlength=n_users)
    mass = np.bincount(keys // n_movies, weights=p[keys % n_movies], minlength=n_users)
    while (need := counts - have).any():
        users = np.flatnonzero(need)
        # A draw repeats a user's earlier movie with probability `mass`: draw enough to mostly finish.
        draws = np.ceil(need[users] * 1.1 / np.maximum(1.0 - mass[users], 0.01)).astype(np.int64) + 3
        cand = np.repeat(users, draws) * n_movies + np.searchsorted(cdf, rng.random(draws.sum()), side="right")
        cand = cand[keys[np.minimum(np.searchsorted(keys, cand), len(keys) - 1)] != cand]
        first = np.sort(np.unique(cand, return_index=True)[1])
        cand = cand[first]  # first draw of each new pair, still in draw order within each user
        user = cand // n_movies
        rank = np.arange(len(cand)) - np.searchsorted(user, user)
        cand = cand[rank < need[user]]
        keys = np.sort(np.concatenate([keys, cand]), kind="stable")  # timsort: one merge of two runs
        have += np.bincount(cand // n_movies, minlength=n_users)
        mass += np.bincount(cand // n_movies, weights=p[cand % n_movies], minlength=n_users)
        log.info("pairs: %s of %s drawn", f"{len(keys):,}", f"{counts.sum():,}")
    return keys


def _timestamps(rng: np.random.Generator, user: np.ndarray, counts: np.ndarray) -> np.ndarray:
    span = T_LAST - T_FIRST
    g = GROWTH / span
    signup = T_FIRST + np.log1p(rng.random(len(counts)) * np.expm1(GROWTH)) / g
    # Most users rate in a burst of a few days; heavy users keep coming back for months or years.
    active = np.exp(rng.normal(np.log(3 * DAY) + 0.8 * np.log(counts / MIN_RATINGS), 1.5))
    active = np.minimum(active, T_LAST - signup)
    ts = np.empty(len(user), dtype=np.int64)
    for s in range(0, len(user), CHUNK):
        u = user[s:s + CHUNK]
        ts[s:s + CHUNK] = signup[u] + active[u] * rng.random(len(u)) ** 2  # front-loaded
    return ts


def _levels(rng: np.random.Generator, user: np.ndarray, movie: np.ndarray, genre_mask: np.ndarray,
            p: np.ndarray, n_users: int) -> np.ndarray:
    """Rating level indices 0..9 from a latent-factor score, cut at ML-25M's rating quantiles."""
    n_movies, n = len(p), len(user)
    b_user = rng.normal(0.0, 0.5, n_users)
    logp = np.log(p)
    # Popular movies are rated a little higher on average, as in MovieLens.
    b_movie = rng.normal(0.0, 0.5, n_movies) + 0.15 * (logp - logp.mean()) / logp.std()
    # Movie factors partly follow genres, so content-based signals carry some information too.
    by_genre = rng.normal(0.0, 1.0, (len(GENRES), N_FACTORS))
    n_genres = np.maximum(genre_mask.sum(axis=1, keepdims=True), 1)
    q = ((genre_mask @ by_genre) / np.sqrt(n_genres) + rng.normal(0.0, 1.0, (n_movies, N_FACTORS))) * 0.4
    q = q.astype(np.float32)
    pu = rng.normal(0.0, N_FACTORS ** -0.5, (n_users, N_FACTORS)).astype(np.float32)
    score = np.empty(n, dtype=np.float64)
    for s in range(0, n, CHUNK):
        u, m = user[s:s + CHUNK], movie[s:s + CHUNK]
        score[s:s + CHUNK] = (b_user[u] + b_movie[m] + np.einsum("ij,ij->i", pu[u], q[m])
                              + rng.normal(0.0, 1.0, len(u)))
    level = np.empty(n, dtype=np.int8)
    level[np.argsort(score)] = np.repeat(np.arange(len(LEVELS), dtype=np.int8), _proportional(n, LEVEL_COUNTS))
    return level


def _tags(rng: np.random.Generator, user: np.ndarray, counts: np.ndarray, n_ratings: int) -> np.ndarray:
    """Rows of ratings that also get a tag: ML-25M has few taggers, mostly its active users."""
    taggers = rng.choice(len(counts), max(1, len(counts) // 11), replace=False, p=counts / counts.sum())
    eligible = np.flatnonzero(np.isin(user, taggers))
    return np.sort(rng.choice(eligible, min(len(eligible), max(10, n_ratings // 100)), replace=False))


def _write_arrow(path: Path, header: str, n: int, batch) -> None:
    """For columns that never need quoting: pyarrow, with quoting "none" (its "needed" would quote
    every string, e.g. "4.0"), which also refuses any value that would need quotes."""
    options = pacsv.WriteOptions(include_header=False, quoting_style="none")
    with path.open("wb") as fh:
        fh.write(header.encode() + b"\n")
        first = batch(0, min(n, CHUNK))
        with pacsv.CSVWriter(fh, first.schema, write_options=options) as writer:
            writer.write_table(first)
            for s in range(CHUNK, n, CHUNK):
                writer.write_table(batch(s, min(n, s + CHUNK)))


def _write_text(path: Path, header: str, columns: list) -> None:
    """For free text (titles, tags): quotes only the fields that need it, like MovieLens."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write(header + "\n")
        csv.writer(fh, lineterminator="\n").writerows(zip(*columns))


def generate(out_dir: Path, scale: str | int = "small", seed: int = 42) -> dict:
    """Writes ratings.csv, movies.csv, tags.csv, links.csv and README.txt into out_dir.
    The same seed and scale give byte-identical files."""
    started = time.perf_counter()
    shape = shape_for(scale)
    _check(shape)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # One stream per part, so that changing one part does not reshuffle the others.
    rngs = dict(zip(("users", "movies", "pairs", "times", "scores", "tags"),
                    map(np.random.default_rng, np.random.SeedSequence(seed).spawn(6))))
    log.info("generating %s (%s users, %s rated movies, %s ratings, seed %d) into %s", scale,
             f"{shape.n_users:,}", f"{shape.n_movies:,}", f"{shape.n_ratings:,}", seed, out_dir)

    with stage(log, "users and movies"):
        counts = _user_counts(rngs["users"], shape)
        movies = _movies(rngs["movies"], shape)
        p = _popularity(shape.n_movies, 0.5 * shape.n_users / shape.n_ratings, rngs["movies"])
    with stage(log, "pairs") as st:
        keys = _pairs(rngs["pairs"], counts, p)
        user, movie = (keys // shape.n_movies).astype(np.int32), (keys % shape.n_movies).astype(np.int32)
        del keys
        st.rows = len(user)
    with stage(log, "timestamps"):
        ts = _timestamps(rngs["times"], user, counts)
    with stage(log, "ratings"):
        level = _levels(rngs["scores"], user, movie, movies["genre_mask"][movies["rated"]], p, shape.n_users)
    with stage(log, "order"):
        # Rows are already by user (then movie), so a stable sort on (user, time) keeps movie as tie-break.
        order = np.argsort(user.astype(np.int64) * (T_LAST - T_FIRST + 1) + (ts - T_FIRST), kind="stable")
        movie_id = movies["ids"][movies["rated"]][movie[order]]
        ts, level = ts[order], level[order]
        del order, movie

    levels = pa.array(LEVELS)
    with stage(log, "write ratings.csv") as st:
        _write_arrow(out_dir / "ratings.csv", "userId,movieId,rating,timestamp", len(user),
                     lambda a, b: pa.table({"userId": user[a:b] + 1, "movieId": movie_id[a:b],
                                            "rating": levels.take(level[a:b]), "timestamp": ts[a:b]}))
        st.rows = len(user)
    with stage(log, "write movies.csv, links.csv, tags.csv"):
        _write_text(out_dir / "movies.csv", "movieId,title,genres",
                    [movies["ids"].tolist(), movies["titles"].to_pylist(), movies["genres"].to_pylist()])
        _write_arrow(out_dir / "links.csv", "movieId,imdbId,tmdbId", len(movies["ids"]),
                     lambda a, b: pa.table({"movieId": movies["ids"][a:b], "imdbId": movies["imdb"][a:b],
                                            "tmdbId": movies["tmdb"][a:b]}))
        tag_rng = rngs["tags"]
        rows = _tags(tag_rng, user, counts, shape.n_ratings)
        zipf = 1.0 / np.arange(1, len(TAG_WORDS) + 1)
        words = np.array(TAG_WORDS)[tag_rng.choice(len(TAG_WORDS), len(rows), p=zipf / zipf.sum())]
        tag_ts = np.minimum(ts[rows] + tag_rng.integers(0, DAY, len(rows)), T_LAST)
        by = np.lexsort((movie_id[rows], user[rows]))  # MovieLens orders tags by user, then movie
        rows, words, tag_ts = rows[by], words[by], tag_ts[by]
        _write_text(out_dir / "tags.csv", "userId,movieId,tag,timestamp",
                    [(user[rows] + 1).tolist(), movie_id[rows].tolist(), words.tolist(), tag_ts.tolist()])

    share = np.bincount(level, minlength=len(LEVELS)) / len(level)
    summary = {
        "scale": str(scale), "seed": seed, "n_users": shape.n_users, "n_movies": int(np.count_nonzero(np.bincount(movie_id))),
        "n_movies_listed": len(movies["ids"]), "n_ratings": len(user), "n_tags": len(rows),
        "rating_distribution": {lv: round(float(s), 4) for lv, s in zip(LEVELS, share)},
    }
    (out_dir / "README.txt").write_text(
        "SYNTHETIC data in the MovieLens ml-25m CSV layout. This is NOT MovieLens data: users, movies,\n"
        "titles, links, tags and ratings are all made up by movierec.synthetic.\n\n"
        f"scale: {scale}\nseed: {seed}\n"
        f"users: {shape.n_users:,}\nrated movies: {summary['n_movies']:,}\n"
        f"listed movies: {summary['n_movies_listed']:,}\nratings: {len(user):,}\ntags: {len(rows):,}\n\n"
        "Ratings come from a latent-factor model (user and movie biases and factors plus noise), cut\n"
        "at ML-25M's rating proportions. The same seed and scale reproduce these files byte for byte:\n"
        f"  python jobs/generate_synthetic.py --out DIR --scale {scale} --seed {seed}\n")
    summary["seconds"] = round(time.perf_counter() - started, 1)
    log.info("done in %.1fs: %s", summary["seconds"], summary)
    return summary
