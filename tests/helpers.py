"""Plain helpers the test modules share (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from psycopg import sql

from movierec.core.config import project_root
from movierec.serve import pg_settings as pgs
from movierec.serve.pg_settings import PgSettings

ROOT = project_root()
VENV_BIN = ROOT / ".venv" / "bin"
ML_SMALL = (ROOT / ".." / "shared" / "data" / "ml-latest-small").resolve()
PIPELINE_DATE = "2026-11-21"   # the run date of the suite's spark-submit pipeline (a Saturday)
K = 100                        # recommend.k of that run
# The suite's spark-submits are short-lived JVMs on tiny data: the C1 compiler alone starts them
# about 20% faster (detect_drift on ml-latest-small: 24 s against 30 s), and the serial
# collector spares the parallel GC threads on 2 busy cores (an ingest of 20,000 synthetic
# ratings: 57-60 cpu-s against 73 with C1 alone and 112 with neither). Tests only; jobs at
# scale want C2 and a parallel collector.
TEST_JVM_OPTS = {"SPARK_SUBMIT_OPTS": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"}


def write_release(folder: Path, files: dict[str, str], encoding: str = "utf-8") -> Path:
    """Writes a hand-made release: file name -> content (lines joined by \\n); a lone
    surrogate such as "\\udcff" is written as the raw byte 0xff (invalid UTF-8)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_bytes(text.encode(encoding, "surrogateescape"))
    return folder


def copy_lake(src: Path, dest: Path) -> Path:
    """A private copy of a shared lake, for a test that writes."""
    shutil.copytree(src, dest)
    return dest


def job_env(**extra: str) -> dict[str, str]:
    """What the Makefile exports for spark-submit, without a Spark session of this process."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYSPARK_GATEWAY") and k not in ("SPARK_HOME", "SPARK_ENV_LOADED")}
    python = str(Path(sys.executable))
    env.update(SPARK_CONF_DIR=str(ROOT), SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=python,
               PYSPARK_DRIVER_PYTHON=python, OPENBLAS_NUM_THREADS="1",
               PATH=f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}", **TEST_JVM_OPTS)
    env.update(extra)
    return env


def run_job(args: list[str], env: dict[str, str], timeout: float = 900,
            new_session: bool = False) -> subprocess.CompletedProcess:
    """A job as a user runs it, from the project root; stderr merged into stdout in order
    (spark-submit prints the Python driver's log there anyway). new_session: in a process group
    of its own, which a test may kill whole."""
    return subprocess.run(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout, start_new_session=new_session)


def tail(text: str | None, lines: int = 60) -> str:
    return "\n".join((text or "").splitlines()[-lines:])


def pg_database(settings: PgSettings, name: str) -> PgSettings:
    """`settings` pointed at database `name` on the same server, created if absent."""
    with pgs.connect(settings) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return replace(settings, database=name)
