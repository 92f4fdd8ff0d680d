"""Ingest on hand-made releases (every rule, every layout) and on the real ml-latest-small."""

from __future__ import annotations

import zipfile

import pytest
from deltalake import DeltaTable as RustDeltaTable
from pyspark.sql import functions as F

from movierec.core import delta_io, job_guard, tables as t
from movierec.core.config import load_config
from movierec.data import ingest, split
from movierec.data.layouts import SourceError
from tests.helpers import copy_lake, job_env, run_job, tail, write_release

MOVIES = "\n".join([
    "movieId,title,genres",
    "1,Toy Story (1995),Adventure|Animation|Children",
    '2,"American President, The (1995)",Comedy|Drama|Romance',
    "3,Untitled,(no genres listed)",
    "x,Bad Id (2000),Drama",                       # line 5: unparseable:movie_id
    "4,Series (2006–2007),Drama",
])
RATINGS = "\n".join([
    "userId,movieId,rating,timestamp",
    "1,1,4.0,964982703",          # 2 ok
    "1,2,3.5,964982704",          # 3 ok
    "1,3,5.0",                    # 4 column_count
    "2,1,6.0,964982703",          # 5 rating_out_of_range
    "2,2,3.7,964982703",          # 6 rating_off_step
    "2,3,4.0,700000000",          # 7 timestamp_out_of_range (1992)
    "0,1,4.0,964982703",          # 8 non_positive_id:user_id
    "2,99,4.0,964982703",         # 9 unknown_movie
    "2,1,abc,964982703",          # 10 unparseable:rating
    "3,1,2.0,964982800",          # 11 duplicate (older than line 12)
    "3,1,3.0,964982900",          # 12 ok: latest of the pair
    "3,4,0.5,1000000000",         # 13 ok
    "3,2,4.5,4000000000",         # 14 timestamp_out_of_range (future)
    "",                           # 15 a blank line: read and rejected, never skipped
    "1,\udcff\udcfe,4.0,964982703",  # 16 unparseable:movie_id, bytes 0xff 0xfe: invalid UTF-8
    "1,4,4.0,964982703",          # 17 ok
])
TAGS = "\n".join([
    "userId,movieId,tag,timestamp",
    '1,1,"funny, very",964982703',
    "1,99,ghost,964982703",       # unknown_movie
    "1,2,,964982703",             # empty:tag
])
LINKS = "\n".join([
    "movieId,imdbId,tmdbId",
    "1,0114709,862",
    "2,0112346,",                 # tmdb missing: fine
    "3,tt123,1",                  # unparseable:imdb_id
])


@pytest.fixture(scope="module")
def bad_release(tmp_path_factory):
    return write_release(tmp_path_factory.mktemp("release") / "ml-handmade", {
        "movies.csv": MOVIES, "ratings.csv": RATINGS, "tags.csv": TAGS, "links.csv": LINKS})


@pytest.fixture(scope="module")
def handmade(spark, bad_release, tmp_path_factory):
    """The hand-made release ingested once: (lake, result). Copy the lake to write to it."""
    lake = tmp_path_factory.mktemp("handmade") / "lake"
    cfg = load_config("test", [f"lake={lake}", f"ingest.source={bad_release}"])
    return lake, ingest.run(spark, cfg)


def _rejects(spark, lake):
    return {(r.source_file, r.line_number): r.rule for r in delta_io.read(spark, lake, t.REJECTS).collect()}


def test_every_rule_quarantines_the_right_line(spark, handmade):
    lake, result = handmade
    rejects = _rejects(spark, lake)
    assert rejects == {
        ("movies.csv", 5): "unparseable:movie_id",
        ("ratings.csv", 4): "column_count",
        ("ratings.csv", 5): "rating_out_of_range",
        ("ratings.csv", 6): "rating_off_step",
        ("ratings.csv", 7): "timestamp_out_of_range",
        ("ratings.csv", 8): "non_positive_id:user_id",
        ("ratings.csv", 9): "unknown_movie",
        ("ratings.csv", 10): "unparseable:rating",
        ("ratings.csv", 11): "duplicate",
        ("ratings.csv", 14): "timestamp_out_of_range",
        ("ratings.csv", 15): "column_count",
        ("ratings.csv", 16): "unparseable:movie_id",
        ("tags.csv", 3): "unknown_movie",
        ("tags.csv", 4): "empty:tag",
        ("links.csv", 4): "unparseable:imdb_id",
    }
    raw = delta_io.read(spark, lake, t.REJECTS).where("line_number = 6").first().raw_line
    assert raw == "2,2,3.7,964982703"
    # the quarantine stays readable by pyarrow-based readers, the exact bytes kept beside
    quarantine = RustDeltaTable(str(lake / t.REJECTS)).to_pyarrow_table().to_pylist()
    invalid = [(r["raw_line"], r["raw_bytes"]) for r in quarantine if r["raw_bytes"] is not None]
    assert invalid == [("1,\ufffd\ufffd,4.0,964982703", b"1,\xff\xfe,4.0,964982703")]
    counts = {f.file: (f.read, f.accepted, f.rejected) for f in result.files}
    assert counts == {"movies.csv": (5, 4, 1), "ratings.csv": (16, 5, 11),
                      "tags.csv": (3, 1, 2), "links.csv": (3, 2, 1)}
    assert result.rows_read == result.rows_accepted + result.rows_rejected == 27

    ratings = {(r.user_id, r.movie_id): (r.rating, r.ts.timestamp())
               for r in delta_io.read(spark, lake, t.RATINGS).collect()}
    assert ratings == {(1, 1): (4.0, 964982703), (1, 2): (3.5, 964982704),
                       (3, 1): (3.0, 964982900), (3, 4): (0.5, 1000000000), (1, 4): (4.0, 964982703)}
    movies = {r.movie_id: (r.title, r.year, list(r.genres))
              for r in delta_io.read(spark, lake, t.MOVIES).collect()}
    assert movies == {
        1: ("Toy Story (1995)", 1995, ["Adventure", "Animation", "Children"]),
        2: ("American President, The (1995)", 1995, ["Comedy", "Drama", "Romance"]),
        3: ("Untitled", None, []),
        4: ("Series (2006–2007)", 2006, ["Drama"]),
    }
    tag = delta_io.read(spark, lake, t.TAGS).first()
    assert (tag.user_id, tag.movie_id, tag.tag) == (1, 1, "funny, very")
    links = {r.movie_id: (r.imdb_id, r.tmdb_id) for r in delta_io.read(spark, lake, t.LINKS).collect()}
    assert links == {1: ("0114709", 862), 2: ("0112346", None)}
    assert delta_io.read(spark, lake, t.GENOME_SCORES).count() == 0  # release has none

    run = delta_io.read(spark, lake, t.INGESTION_RUNS).first()
    assert (run.rows_read, run.rows_accepted, run.rows_rejected) == (27, 12, 15)
    assert run.layout == "csv" and run.checksum == result.checksum


def test_reingesting_the_same_source_changes_no_table(spark, make_cfg, lake, bad_release, handmade):
    copy_lake(handmade[0], lake)
    cfg = make_cfg(ingest__source=bad_release)
    names = t.INGESTED_TABLES + (t.REJECTS, t.INGESTION_RUNS)
    before = {n: delta_io.version(spark, lake, n) for n in names}
    again = ingest.run(spark, cfg)
    assert again.skipped
    assert {n: delta_io.version(spark, lake, n) for n in names} == before
    # forced: tables rewritten with the same rows, rejects replaced rather than appended
    ingest.run(spark, cfg.with_overrides({"ingest.force": True}))
    assert delta_io.read(spark, lake, t.RATINGS).count() == 5
    assert delta_io.read(spark, lake, t.REJECTS).count() == 15
    assert delta_io.read(spark, lake, t.INGESTION_RUNS).count() == 2


ANOTHER_RELEASE = {
    "movies.csv": "movieId,title,genres\n7,Seven (1995),Drama\n8,Eight (1996),Comedy\n9,Nine (2009),Drama",
    "ratings.csv": "userId,movieId,rating,timestamp\n5,7,4.0,964982703\n5,8,3.0,964982704\n6,9,2.5,964982705",
}


def test_an_ingest_killed_after_its_first_commit_is_refused_to_jobs_until_its_rerun(
        spark, make_cfg, lake, handmade, tmp_path):
    """A real `kill -9` of the spark-submit process group right after ingest's first commit
    (movies) of another release: the newest tables mix two releases, so no job may read them
    (the split of the issue's run named movies that `movies` lacked) until ingest runs again."""
    copy_lake(handmade[0], lake)
    source = write_release(tmp_path / "ml-another", ANOTHER_RELEASE)
    killed = run_job(["spark-submit", "jobs/ingest.py", "--profile", "test", "--lake", str(lake),
                      "--source", str(source)],
                     job_env(**{job_guard.FAULT_ENV: f"kill:{t.RATINGS}"}), timeout=300, new_session=True)
    assert killed.returncode == -9, tail(killed.stdout)
    newest = {name: spark.read.format("delta").load(str(lake / name)) for name in (t.MOVIES, t.RATINGS)}
    assert sorted(r.movie_id for r in newest[t.MOVIES].collect()) == [7, 8, 9]        # the new release
    assert newest[t.RATINGS].where("movie_id IN (7, 8, 9)").count() == 0              # the old one
    with pytest.raises(job_guard.UnfinishedJobError,
                       match=r"'ratings' .* `ingest` \(pid \d+ .* began writing movies, ratings\. .* run `ingest` again"):
        split.run(spark, make_cfg())

    again = ingest.run(spark, make_cfg(ingest__source=source))
    assert (again.rows_accepted, again.rows_rejected) == (6, 0)
    assert job_guard.markers(lake) == []
    ratings = delta_io.read(spark, lake, t.RATINGS).join(delta_io.read(spark, lake, t.MOVIES), t.MOVIE_ID)
    assert sorted((r.user_id, r.movie_id) for r in ratings.collect()) == [(5, 7), (5, 8), (6, 9)]


@pytest.mark.parametrize("breakage, message", [
    ("missing", "source not found"),
    ("header", "line 1 is 'user,movie,rating,time', expected the header 'userId,movieId,rating,timestamp'"),
    ("layout", "unknown MovieLens layout"),
    ("not_zip", "not a zip file"),
])
def test_bad_sources_fail_fast_and_leave_the_lake_alone(spark, make_cfg, lake, handmade,
                                                        tmp_path, breakage, message):
    copy_lake(handmade[0], lake)
    before = {n: delta_io.version(spark, lake, n) for n in (t.RATINGS, t.INGESTION_RUNS)}
    broken = tmp_path / "broken"
    if breakage == "missing":
        source = tmp_path / "nowhere"
    elif breakage == "header":
        source = write_release(broken, {"movies.csv": MOVIES, "ratings.csv":
                                        RATINGS.replace("userId,movieId,rating,timestamp",
                                                        "user,movie,rating,time")})
    elif breakage == "layout":
        source = write_release(broken, {"scores.txt": "1,2,3"})
    else:
        source = broken.with_suffix(".zip")
        source.write_text("not a zip")
    with pytest.raises(SourceError, match=message):
        ingest.run(spark, make_cfg(ingest__source=source))
    assert {n: delta_io.version(spark, lake, n) for n in before} == before
    assert not any((lake / "_staging").glob("*/*")), "staging files left behind"


def test_zip_release_with_crlf_and_top_folder(spark, make_cfg, lake, tmp_path):
    archive = tmp_path / "ml-zipped.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ml-zipped/movies.csv", MOVIES.replace("\n", "\r\n") + "\r\n")
        zf.writestr("ml-zipped/ratings.csv", (RATINGS.replace("\n", "\r\n") + "\r\n")
                    .encode("utf-8", "surrogateescape"))
    result = ingest.run(spark, make_cfg(ingest__source=archive))
    assert result.layout == "csv"
    assert delta_io.read(spark, lake, t.RATINGS).count() == 5
    assert delta_io.read(spark, lake, t.MOVIES).where("movie_id = 2").first().title == \
        "American President, The (1995)"
    assert delta_io.read(spark, lake, t.TAGS).count() == 0


def test_ml_1m_layout_latin1_whole_star_scale(spark, make_cfg, lake, tmp_path):
    source = tmp_path / "ml-1m"
    write_release(source, {
        "movies.dat": "1::Toy Story (1995)::Animation|Children's|Comedy\n"
                      "2::Misérables, Les (1995)::Drama\n",
        "ratings.dat": "1::1::5::978300760\n1::2::3::978302109\n2::1::4.5::978300760\n",
        "users.dat": "1::F::1::10::48067\n",
    }, encoding="latin-1")
    result = ingest.run(spark, make_cfg(ingest__source=source))
    assert result.layout == "dat-1m"
    assert delta_io.read(spark, lake, t.MOVIES).where("movie_id = 2").first().title == \
        "Misérables, Les (1995)"
    assert _rejects(spark, lake) == {("ratings.dat", 3): "rating_off_step"}  # 1m has whole stars


def test_ml_10m_layout_with_tags(spark, make_cfg, lake, tmp_path):
    source = write_release(tmp_path / "ml-10M100K", {
        "movies.dat": "1::Toy Story (1995)::Adventure|Animation\n",
        "ratings.dat": "1::1::4.5::838985046\n",
        "tags.dat": "15::1::excellent!::1215184630\n",
    })
    result = ingest.run(spark, make_cfg(ingest__source=source))
    assert (result.layout, result.rows_accepted, result.rows_rejected) == ("dat-10m", 3, 0)
    assert delta_io.read(spark, lake, t.TAGS).first().tag == "excellent!"


def test_ml_100k_layout_genre_flags(spark, make_cfg, lake, tmp_path):
    genres = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
              "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
              "Romance", "Sci-Fi", "Thriller", "War", "Western"]
    flags_toy = ["0"] * 19
    for g in ("Animation", "Children's", "Comedy"):
        flags_toy[genres.index(g)] = "1"
    source = write_release(tmp_path / "ml-100k", {
        "u.genre": "".join(f"{g}|{i}\n" for i, g in enumerate(genres)) + "\n",
        "u.item": "1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(flags_toy) + "\n"
                  "2|Café (1996)|01-Jan-1996||http://y|" + "|".join(["1"] + ["0"] * 18) + "\n"
                  "3|Short row|01-Jan-1996\n",
        "u.data": "196\t1\t3\t881250949\n186\t2\t3\t891717742\n22\t1\t0\t878887116\n",
    }, encoding="latin-1")
    result = ingest.run(spark, make_cfg(ingest__source=source))
    assert result.layout == "ml-100k"
    movies = {r.movie_id: (r.title, r.year, list(r.genres))
              for r in delta_io.read(spark, lake, t.MOVIES).collect()}
    assert movies == {1: ("Toy Story (1995)", 1995, ["Animation", "Children's", "Comedy"]),
                      2: ("Café (1996)", 1996, [])}
    assert _rejects(spark, lake) == {("u.item", 3): "column_count",
                                     ("u.data", 3): "rating_out_of_range"}


def test_real_ml_latest_small(spark, ingested):
    run, lake = ingested.ingest, ingested.lake
    assert run["layout"] == "csv"
    assert {f["table"]: (f["read"], f["accepted"], f["rejected"]) for f in run["files"]} == {
        t.MOVIES: (9742, 9742, 0), t.RATINGS: (100836, 100836, 0),
        t.TAGS: (3683, 3683, 0), t.LINKS: (9742, 9742, 0)}
    assert (run["rows_read"], run["rows_accepted"], run["rows_rejected"]) == (124_003, 124_003, 0)
    assert delta_io.read(spark, lake, t.REJECTS).count() == 0
    ratings = delta_io.read(spark, lake, t.RATINGS)
    stats = ratings.agg(F.countDistinct(t.USER_ID), F.countDistinct(t.MOVIE_ID),
                        F.min(t.TS), F.max(t.TS), F.avg(t.RATING)).first()
    assert stats[0] == 610 and stats[1] == 9724
    assert (str(stats[2]), str(stats[3])) == ("1996-03-29 18:36:55", "2018-09-24 14:27:30")
    assert round(stats[4], 4) == 3.5016
    first = ratings.where("user_id = 1 AND movie_id = 1").first()
    assert (first.rating, int(first.ts.timestamp())) == (4.0, 964982703)
    # readable by a Delta reader that is not Spark
    rust = RustDeltaTable(str(lake / t.RATINGS)).to_pyarrow_table()
    assert rust.num_rows == 100836 and rust.column_names == [t.USER_ID, t.MOVIE_ID, t.RATING, t.TS]


def test_zip_paths_outside_the_folder_and_zip_bombs_are_refused(tmp_path):
    """Checked where the zip is opened, before the lake or Spark is touched."""
    from movierec.data.source import open_source

    def release(path, **extra):
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("ml-z/movies.csv", MOVIES + "\n")
            for name, data in extra.items():
                zf.writestr(name.replace("__", "/"), data)
        return path

    for evil in ("../escaped.csv", "/tmp/escaped.csv", "ml-z/../../escaped.csv"):
        archive = tmp_path / "evil.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("ml-z/movies.csv", MOVIES + "\n")
            zf.writestr(evil, "1,2,3\n")
        with pytest.raises(SourceError, match=f"member '{evil}' would be written outside"):
            open_source(archive, tmp_path / "staging")
    assert not list(tmp_path.rglob("escaped.csv")) and not (tmp_path / "staging" / "extracted").exists()

    bomb = release(tmp_path / "bomb.zip", **{"ml-z__ratings.csv": b"\0" * (64 << 20)})   # ~64 KB zipped
    with pytest.raises(SourceError, match="'ml-z/ratings.csv' inflates past 100x .* refused as a zip bomb"):
        open_source(bomb, tmp_path / "staging2")
    written = sum(f.stat().st_size for f in (tmp_path / "staging2").rglob("*") if f.is_file())
    assert written < 16 << 20   # stopped early, not after 64 MiB
    ratings = (RATINGS + "\n").encode("utf-8", "surrogateescape")
    fine = open_source(release(tmp_path / "fine.zip", **{"ml-z__ratings.csv": ratings}), tmp_path / "s3")
    assert set(fine.files) == {"movies", "ratings"}
