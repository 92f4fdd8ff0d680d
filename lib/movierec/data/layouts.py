"""The published MovieLens file layouts, and detection of which one a release folder holds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from movierec.core import tables as t
from movierec.core.errors import UserError


class SourceError(UserError, ValueError):
    """A source that cannot be ingested at all: nothing in the lake is touched."""


@dataclass(frozen=True)
class Column:
    """One typed output column: taken from source field `index`, checked by the rules of `kind`."""
    name: str
    index: int
    kind: str  # id | int_opt | rating | ts | text | genres | genre_flags | relevance | imdb


@dataclass(frozen=True)
class FileSpec:
    table: str
    filename: str
    fmt: str                      # csv | dat (::) | tsv | pipe
    n_fields: int
    columns: tuple[Column, ...]
    header: str | None = None     # the exact first line, for files that have one
    encoding: str = "utf-8"
    required: bool = True
    dedup_key: tuple[str, ...] = ()  # duplicates on this key keep the latest row
    refers_to_movies: bool = False   # rows whose movie is not in movies are rejected


@dataclass(frozen=True)
class Layout:
    name: str
    releases: str
    files: tuple[FileSpec, ...]
    rating_min: float
    rating_max: float
    rating_step: float
    genre_file: str | None = None  # ml-100k keeps genre names apart from the movie rows

    def spec(self, table: str) -> FileSpec | None:
        return next((f for f in self.files if f.table == table), None)


def _ratings(filename: str, fmt: str, header: str | None = None) -> FileSpec:
    return FileSpec(t.RATINGS, filename, fmt, 4, (
        Column(t.USER_ID, 0, "id"), Column(t.MOVIE_ID, 1, "id"),
        Column(t.RATING, 2, "rating"), Column(t.TS, 3, "ts")),
        header=header, dedup_key=(t.USER_ID, t.MOVIE_ID), refers_to_movies=True)


def _movies(filename: str, fmt: str, header: str | None = None, encoding: str = "utf-8") -> FileSpec:
    return FileSpec(t.MOVIES, filename, fmt, 3, (
        Column(t.MOVIE_ID, 0, "id"), Column(t.TITLE, 1, "text"), Column(t.GENRES, 2, "genres")),
        header=header, encoding=encoding, dedup_key=(t.MOVIE_ID,))


def _tags(filename: str, fmt: str, header: str | None = None) -> FileSpec:
    return FileSpec(t.TAGS, filename, fmt, 4, (
        Column(t.USER_ID, 0, "id"), Column(t.MOVIE_ID, 1, "id"),
        Column(t.TAG, 2, "text"), Column(t.TS, 3, "ts")),
        header=header, required=False, refers_to_movies=True)


CSV = Layout(
    name="csv",
    releases="ml-25m / ml-20m / ml-32m / ml-latest / ml-latest-small",
    rating_min=0.5, rating_max=5.0, rating_step=0.5,
    files=(
        _movies("movies.csv", "csv", "movieId,title,genres"),
        _ratings("ratings.csv", "csv", "userId,movieId,rating,timestamp"),
        _tags("tags.csv", "csv", "userId,movieId,tag,timestamp"),
        FileSpec(t.LINKS, "links.csv", "csv", 3, (
            Column(t.MOVIE_ID, 0, "id"), Column(t.IMDB_ID, 1, "imdb"), Column(t.TMDB_ID, 2, "int_opt")),
            header="movieId,imdbId,tmdbId", required=False, dedup_key=(t.MOVIE_ID,),
            refers_to_movies=True),
        FileSpec(t.GENOME_TAGS, "genome-tags.csv", "csv", 2, (
            Column(t.TAG_ID, 0, "id"), Column(t.TAG, 1, "text")),
            header="tagId,tag", required=False, dedup_key=(t.TAG_ID,)),
        FileSpec(t.GENOME_SCORES, "genome-scores.csv", "csv", 3, (
            Column(t.MOVIE_ID, 0, "id"), Column(t.TAG_ID, 1, "id"), Column(t.RELEVANCE, 2, "relevance")),
            header="movieId,tagId,relevance", required=False, dedup_key=(t.MOVIE_ID, t.TAG_ID),
            refers_to_movies=True),
    ),
)

ML_10M = Layout(
    name="dat-10m", releases="ml-10m (ml-10M100K)",
    rating_min=0.5, rating_max=5.0, rating_step=0.5,
    files=(_movies("movies.dat", "dat"), _ratings("ratings.dat", "dat"), _tags("tags.dat", "dat")),
)

ML_1M = Layout(
    name="dat-1m", releases="ml-1m",
    rating_min=1.0, rating_max=5.0, rating_step=1.0,
    files=(_movies("movies.dat", "dat", encoding="latin-1"), _ratings("ratings.dat", "dat")),
)

ML_100K = Layout(
    name="ml-100k", releases="ml-100k",
    rating_min=1.0, rating_max=5.0, rating_step=1.0,
    genre_file="u.genre",
    files=(
        FileSpec(t.MOVIES, "u.item", "pipe", 24, (
            Column(t.MOVIE_ID, 0, "id"), Column(t.TITLE, 1, "text"), Column(t.GENRES, 5, "genre_flags")),
            encoding="latin-1", dedup_key=(t.MOVIE_ID,)),
        _ratings("u.data", "tsv"),
    ),
)

LAYOUTS = (CSV, ML_10M, ML_1M, ML_100K)


def _matches(folder: Path, layout: Layout) -> bool:
    names = {p.name for p in folder.iterdir() if p.is_file()}
    if not all(f.filename in names for f in layout.files if f.required):
        return False
    if layout is ML_10M:  # ml-1m and ml-10m share file names; only ml-1m ships users.dat
        return "users.dat" not in names
    if layout is ML_1M:
        return "users.dat" in names
    return True


def match(folder: Path) -> Layout | None:
    """The layout whose files sit directly in `folder`, if any."""
    return next((lay for lay in LAYOUTS if _matches(folder, lay)), None)


def detect(folder: Path) -> tuple[Layout, Path]:
    """Finds the layout of a release folder, looking one level down for a single sub-folder
    (the published zips hold one top folder, e.g. ml-latest-small/)."""
    candidates = [folder] + sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    for candidate in candidates:
        if layout := match(candidate):
            return layout, candidate
    found = sorted(p.name for p in folder.iterdir())[:20]
    expected = "; ".join(
        f"{lay.releases}: {', '.join(f.filename for f in lay.files if f.required)}" for lay in LAYOUTS)
    raise SourceError(f"{folder}: unknown MovieLens layout. Found {found}; expected one of: {expected}")
