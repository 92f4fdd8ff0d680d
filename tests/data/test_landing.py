"""ingest_increment --source: new rating and movie files from a landing folder, each taken once,
through the ingest rules, into ratings_increments; on a small hand-made lake."""

from __future__ import annotations

import shutil
from datetime import datetime, timezone

import pytest

from movierec.core import delta_io, job_guard, tables as t
from movierec.core.config import load_config
from movierec.data import increment, known
from movierec.data.layouts import SourceError
from tests.helpers import copy_lake

RATINGS_HEADER = "userId,movieId,rating,timestamp"
TS = 964982703   # 2000-07-30


def _write(path, *lines, newline="\n"):
    path.write_text("".join(line + newline for line in lines))
    return path


@pytest.fixture(scope="module")
def landed(spark, tmp_path_factory):
    """A lake with movies 1-5 and one train and test rating, after its first night of a landing
    folder of seven files: (config, folder, what the night returned). Read only."""
    tmp_path = tmp_path_factory.mktemp("landing")
    lake = tmp_path / "lake"
    movies = [(m, f"Movie {m} (1999)", 1999, ["Drama"]) for m in range(1, 6)]
    delta_io.overwrite(spark.createDataFrame(movies, t.SCHEMAS[t.MOVIES]), lake, t.MOVIES)
    one = [(1, 1, 4.0, datetime(2000, 1, 1, tzinfo=timezone.utc))]
    for name in (t.RATINGS_TRAIN, t.RATINGS_TEST):
        delta_io.overwrite(spark.createDataFrame(one, t.SCHEMAS[t.RATINGS]), lake, name)
    folder = tmp_path / "landing"
    folder.mkdir()
    _write(folder / "a_good.csv", RATINGS_HEADER, f"10,1,4.0,{TS}", f"10,2,3.5,{TS}", f"11,3,5.0,{TS}")
    _write(folder / "b_good_crlf.csv", RATINGS_HEADER, f"12,9,4.5,{TS}", f"12,4,2.0,{TS + 60}",
           newline="\r\n")                                    # movie 9 comes with c_movies.csv
    _write(folder / "c_movies.csv", "movieId,title,genres", "9,New Movie (2018),Comedy|Drama")
    _write(folder / "d_bad_header.csv", "user,movie,stars,when", f"13,1,4.0,{TS}", f"13,2,4.0,{TS}")
    _write(folder / "e_malformed.csv", RATINGS_HEADER, f"14,1,abc,{TS}", "14,2", f"14,3,4.0,{TS}",
           f"14,77,4.0,{TS}", "14,4,4.0")                    # the last line: a partly written row
    shutil.copy(folder / "a_good.csv", folder / "f_repeat_of_a.csv")
    (folder / "g_empty.csv").write_bytes(b"")
    cfg = load_config("test", [f"lake={lake}", f"increment.source={folder}"])
    first = increment.run(spark, cfg, "2026-02-01")
    return cfg, folder, first


def test_each_file_counts_its_lines_and_only_good_rows_arrive(spark, landed):
    cfg, _, first = landed
    lake = cfg.path("lake")
    files = {f["file"]: (f["table"], f["read"], f["accepted"], f["rejected"], f["skipped"])
             for f in first["files"]}
    assert files == {
        "c_movies.csv": ("movies", 1, 1, 0, False),           # taken first: b_good rates movie 9
        "a_good.csv": ("ratings", 3, 3, 0, False),
        "b_good_crlf.csv": ("ratings", 2, 2, 0, False),
        "d_bad_header.csv": ("unknown", 3, 0, 3, False),
        "e_malformed.csv": ("ratings", 5, 1, 4, False),
        "f_repeat_of_a.csv": ("-", 0, 0, 0, True),            # same bytes as a_good.csv
        "g_empty.csv": ("unknown", 0, 0, 0, False),
    }
    assert first["added"] == 6
    rules = {(r.source_file, r.line_number): r.rule for r in delta_io.read(spark, lake, t.REJECTS).collect()}
    assert rules == {("d_bad_header.csv", 1): "header", ("d_bad_header.csv", 2): "header",
                     ("d_bad_header.csv", 3): "header", ("e_malformed.csv", 2): "unparseable:rating",
                     ("e_malformed.csv", 3): "column_count", ("e_malformed.csv", 5): "unknown_movie",
                     ("e_malformed.csv", 6): "column_count"}
    arrived = delta_io.read(spark, lake, t.RATINGS_INCREMENTS).collect()
    assert {(r.user_id, r.movie_id) for r in arrived} == {(10, 1), (10, 2), (11, 3), (12, 9), (12, 4), (14, 3)}
    assert {r.arrival_source for r in arrived if r.user_id == 12} == {"landing b_good_crlf.csv"}
    assert {str(r.run_date) for r in arrived} == {"2026-02-01"}
    assert known.known_ratings(spark, lake, "2026-02-01").count() == 2 + 6
    assert delta_io.read(spark, lake, t.MOVIES).where("movie_id = 9").count() == 1


def test_a_rerun_a_later_night_and_a_night_that_died_take_nothing_twice(spark, landed, lake, tmp_path,
                                                                        monkeypatch):
    cfg, landing, _ = landed
    copy_lake(cfg.path("lake"), lake)
    folder = shutil.copytree(landing, tmp_path / "landing")
    cfg = cfg.with_overrides({"lake": str(lake), "increment.source": str(folder)})
    versions = {n: delta_io.version(spark, lake, n) for n in (t.RATINGS_INCREMENTS, t.REJECTS, t.MOVIES)}
    again = increment.run(spark, cfg, "2026-02-01")
    later = increment.run(spark, cfg, "2026-02-02")
    assert again["added"] == later["added"] == 0
    assert all(f["skipped"] for f in later["files"] if f["file"] != "g_empty.csv")
    assert {n: delta_io.version(spark, lake, n) for n in versions} == versions
    _write(folder / "h_next_night.csv", RATINGS_HEADER, f"10,5,1.0,{TS + 99}")
    merged = delta_io.version(spark, lake, t.RATINGS_INCREMENTS)
    # dies as its MERGE begins (a MERGE is one commit: killed during it, it has not happened),
    # then, on the retry, after its MERGE and before its landing_files rows
    for point, merges in ((t.RATINGS_INCREMENTS, 0), (t.LANDING_FILES, 1)):
        monkeypatch.setenv(job_guard.FAULT_ENV, f"raise:{point}")
        with pytest.raises(job_guard.SimulatedCrash):
            increment.run(spark, cfg, "2026-02-03")
        assert delta_io.version(spark, lake, t.RATINGS_INCREMENTS) == merged + merges
        with pytest.raises(job_guard.UnfinishedJobError, match="run `ingest_increment` again"):
            known.known_ratings(spark, lake, "2026-02-03")
    monkeypatch.delenv(job_guard.FAULT_ENV)
    assert increment.run(spark, cfg, "2026-02-03")["added"] == 1   # the file again, its rating once
    assert known.known_ratings(spark, lake, "2026-02-02").count() == 8
    assert known.known_ratings(spark, lake, "2026-02-03").count() == 9


def test_a_missing_landing_folder_is_a_clear_error(spark, lake, tmp_path):
    cfg = load_config("test", [f"lake={lake}", f"increment.source={tmp_path / 'nowhere'}"])
    with pytest.raises(SourceError, match="landing folder not found"):
        increment.run(spark, cfg, "2026-02-01")
