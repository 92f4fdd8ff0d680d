"""The cluster test's jobs, submitted as a user would: spark-submit from the project root with
the Makefile's environment, the package shipped to the executors with --py-files, the Delta
jars shipped by the driver (spark.jars in spark-defaults.conf)."""

from __future__ import annotations

import os
import signal
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

from movierec_embedded.cluster import Cluster, start_cluster
from tests.helpers import ROOT, TEST_JVM_OPTS, job_env, tail

VENV_BIN = ROOT / ".venv" / "bin"
SUBMIT_TIMEOUT_S = 360
# ingest: the job that most depends on the cluster seeing what the driver staged (extracted
# and transcoded files under the lake); split and the rest add no new way to fail there.
JOBS = ("ingest",)
# Executors must fit the 1g workers. With two executors, Spark would wait up to 3 s per stage
# for a task slot "near" cached data (one executor in local mode never waits): not worth it here.
CONF = ("--conf", "spark.executor.memory=1g", "--conf", "spark.locality.wait=0s",
        "--conf", f"spark.executor.extraJavaOptions={TEST_JVM_OPTS['SPARK_SUBMIT_OPTS']}")


@dataclass
class Submitted:
    cluster: Cluster
    lake: Path
    logs: dict[str, str]
    pkg: Path
    release: dict   # what synthetic.generate says it wrote


def run_on_cluster(base: Path) -> Submitted:
    """A 2-worker cluster under `base`, and the jobs submitted to it, on a small synthetic
    release (the cluster is what is tested here, not the data: real data is the pipeline run's);
    the cluster keeps running (the caller stops it)."""
    from movierec.data import synthetic

    release = synthetic.generate(base / "release", scale=20_000, seed=7)
    cluster = start_cluster(base / "standalone", workers=2, cores_per_worker=1,
                            memory_per_worker="1g")
    try:
        pkg = package_zip(base)
        lake = base / "lake"
        args = {"ingest": ["--source", str(base / "release"), "--lake", str(lake)]}
        logs = {}
        for job in JOBS:
            logs[job] = submit(cluster, pkg, job, *args[job])
            (base / f"{job}.log").write_text(logs[job])
    except BaseException:
        cluster.stop()
        raise
    return Submitted(cluster, lake, logs, pkg, release)


def package_zip(dest: Path) -> Path:
    """lib/movierec as a zip for --py-files, as a real deployment would ship it: the runtime
    package only, without the development tools of lib/movierec_embedded."""
    pkg = dest / "movierec.zip"
    with zipfile.ZipFile(pkg, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted((ROOT / "lib" / "movierec").rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                zf.write(f, f.relative_to(ROOT / "lib").as_posix())
    return pkg


def submit(cluster: Cluster, pkg: Path, job: str, *args: str) -> str:
    cmd = [str(VENV_BIN / "spark-submit"), "--master", cluster.master_url, *CONF,
           "--py-files", str(pkg), f"jobs/{job}.py", *args]
    # own process group: on a timeout the driver's python goes too, not just spark-submit
    # stderr into stdout: spark-submit prints the Python driver's stderr (the job's log) on
    # its stdout anyway, so one stream keeps the lines in order
    proc = subprocess.Popen(cmd, cwd=ROOT, env=job_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=SUBMIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise RuntimeError(f"`{' '.join(cmd)}` timed out after {SUBMIT_TIMEOUT_S}s; output tail:\n"
                           f"{tail(out)}\n\ncluster logs:\n{cluster.log_tail()}")
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited {proc.returncode}; output tail:\n{tail(out)}"
                           f"\n\ncluster logs:\n{cluster.log_tail()}")
    return out
