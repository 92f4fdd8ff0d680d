"""The embedded PostgreSQL server: start, restart after a crash, stop, and its default folder,
which its OS user can reach wherever the project is checked out."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from movierec.core.config import load_config
from movierec.serve import pg_publish, pg_schema, pg_settings as pgs
from movierec_embedded import postgres as embedded
from tests.helpers import ROOT


def select_one(server: embedded.Server) -> list[tuple]:
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        return conn.execute("SELECT 1").fetchall()


def test_server_start_is_idempotent_and_survives_a_stale_pid_file(pg_settings, pg_dir, capsys):
    again = embedded.start(pg_dir)
    assert (again.host, again.port, again.password) == (pg_settings.host, pg_settings.port,
                                                       pg_settings.secret())
    assert embedded.status(pg_dir) == again
    assert embedded.main(["status", "--dir", str(pg_dir)]) == 0
    assert pg_settings.secret() not in capsys.readouterr().out

    base = tempfile.mkdtemp(prefix="movierec-pg-")
    try:
        first = embedded.start(base)
        # A crash: the postmaster killed, its pid file left (and, in a container whose init
        # does not reap, the pid left as a zombie).
        os.kill(int((Path(base) / "data" / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)
        time.sleep(0.2)
        restarted = embedded.start(base)
        # same server identity; the port is the old one unless the dead server's socket still
        # holds it, and then a free one
        assert restarted.password == first.password and restarted.user == first.user
        assert select_one(restarted) == [(1,)]
        assert embedded.stop(base) and embedded.status(base) is None and not embedded.stop(base)
        # A pid file whose pid now belongs to another live process (this one).
        (Path(base) / "data" / "postmaster.pid").write_text(
            f"{os.getpid()}\n{base}/data\n0\n{first.port}\n\n127.0.0.1\n 0 0\nready\n")
        assert embedded.status(base) is None
        again = embedded.start(base)
        assert again.password == first.password   # the same server's password, not a new one
        assert select_one(again) == [(1,)]
    finally:
        embedded.stop(base)
        shutil.rmtree(base, ignore_errors=True)


def test_default_folder_is_per_project_and_outside_it(monkeypatch, tmp_path):
    monkeypatch.setenv(embedded.STATE_DIR_ENV, str(tmp_path / "state"))
    a, b = embedded.default_dir(Path("/x/movierec")), embedded.default_dir(Path("/y/movierec"))
    assert a != b and a.parent == b.parent == tmp_path / "state" / "pg"
    assert a.name.startswith("movierec-") and embedded.default_dir(Path("/x/movierec")) == a
    monkeypatch.delenv(embedded.STATE_DIR_ENV)
    assert embedded.state_dir() == Path(f"/var/tmp/movierec-{os.geteuid()}")


@pytest.mark.skipif(os.geteuid() != 0, reason="the unreachable-folder case is root's: PostgreSQL "
                                               "then runs as another OS user")
def test_a_clone_in_a_private_folder_publishes_to_its_embedded_server(spark, monkeypatch):
    """As root, in a clone whose parent is 0700 (root's home, `mktemp -d`): the default server
    lives in the state directory, which the server's OS user can reach."""
    private = Path(tempfile.mkdtemp(prefix="movierec-clone-"))
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    clone = private / "movierec"
    subprocess.run(["git", "clone", "--quiet", "--depth", "1", f"file://{ROOT}", str(clone)],
                   check=True, timeout=60)
    for name in list(os.environ):
        if name.startswith("MOVIEREC_PG"):
            monkeypatch.delenv(name)
    cfg = load_config("test", root=clone)
    folder = pgs.embedded_dir(cfg)
    try:
        assert not folder.is_relative_to(private)
        settings = pgs.connection_settings(cfg)   # starts the clone's own server
        popular = spark.createDataFrame([(1, 50, 2.0, "v1"), (2, 7, 1.0, "v1")],
                                        "rank int, movie_id int, score float, model_version string")
        popular = popular.selectExpr("*", "DATE'2026-11-21' AS run_date")
        assert pg_publish.publish_table(popular, pg_schema.POPULAR_MOVIES, settings) == 2
        with pgs.connect(settings) as conn:
            assert conn.execute("SELECT movie_id FROM popular_movies ORDER BY rank").fetchall() == \
                [(50,), (7,)]
    finally:
        embedded.stop(folder)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(private, ignore_errors=True)


def test_password_files_are_owner_only_before_their_first_byte(tmp_path, monkeypatch):
    """initdb's password file was written, then chmod-ed: for a moment it was world-readable."""
    fresh, older = tmp_path / "fresh", tmp_path / "older"
    older.write_text("old")
    older.chmod(0o644)
    seen, fdopen = [], os.fdopen

    def spying_fdopen(fd, *args, **kwargs):   # records the file's mode as the text goes in
        f = fdopen(fd, *args, **kwargs)
        write = f.write
        f.write = lambda text: (seen.append(stat.S_IMODE(os.fstat(fd).st_mode)), write(text))[1]
        return f
    monkeypatch.setattr(os, "fdopen", spying_fdopen)
    mask = os.umask(0)   # the worst umask: a plain create would give 0666
    try:
        embedded.write_private(fresh, "secret")
        embedded.write_private(older, "secret")
    finally:
        os.umask(mask)
    assert seen == [0o600, 0o600]
    for path in (fresh, older):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "secret"
