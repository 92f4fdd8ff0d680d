"""The jobs, unchanged, on a Spark standalone cluster on 127.0.0.1 (one master, two workers).

They are submitted as a user would: spark-submit from the project root with the Makefile's
environment, the package shipped to the executors with --py-files, the Delta jars shipped by the
driver (spark.jars in spark-defaults.conf). The tables are read back with the `deltalake` package,
so this module needs no Spark session of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from movierec_embedded.cluster import Cluster, start_cluster
from movierec_embedded.procs import cmdline
from tests.helpers import ROOT, job_env, tail

pytestmark = pytest.mark.cluster

VENV_BIN = ROOT / ".venv" / "bin"
SUBMIT_TIMEOUT_S = 360
# ingest: the job that most depends on the cluster seeing what the driver staged (extracted
# and transcoded files under the lake); split and the rest add no new way to fail there.
JOBS = ("ingest",)
# Executors must fit the 1g workers. With two executors, Spark would wait up to 3 s per stage
# for a task slot "near" cached data (one executor in local mode never waits): not worth it here.
CONF = ("--conf", "spark.executor.memory=1g", "--conf", "spark.locality.wait=0s")


@pytest.fixture(scope="module")
def cluster(ml_small, tmp_path_factory):
    # ml_small first: no data, no cluster started only to be skipped
    c = start_cluster(tmp_path_factory.mktemp("standalone"), workers=2, cores_per_worker=1,
                      memory_per_worker="1g")
    try:
        yield c
    finally:
        c.stop()


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
        pytest.fail(f"`{' '.join(cmd)}` timed out after {SUBMIT_TIMEOUT_S}s; output tail:\n"
                    f"{tail(out)}\n\ncluster logs:\n{cluster.logtail()}")
    if proc.returncode != 0:
        pytest.fail(f"`{' '.join(cmd)}` exited {proc.returncode}; output tail:\n{tail(out)}"
                    f"\n\ncluster logs:\n{cluster.logtail()}")
    return out


def _spark_pid(pid: int) -> bool:
    return any("org.apache.spark" in arg for arg in cmdline(pid) or [])


@dataclass
class Submitted:
    cluster: Cluster
    lake: Path
    logs: dict[str, str]
    pkg: Path


@pytest.fixture(scope="module")
def submitted(cluster, ml_small, tmp_path_factory) -> Submitted:
    base = tmp_path_factory.mktemp("cluster-jobs")
    pkg = package_zip(base)
    lake = base / "lake"
    args = {"ingest": ["--source", str(ml_small), "--lake", str(lake)]}
    logs = {}
    for job in JOBS:
        logs[job] = submit(cluster, pkg, job, *args[job])
        (base / f"{job}.log").write_text(logs[job])
    return Submitted(cluster, lake, logs, pkg)


def test_the_cluster_ingests_what_local_mode_ingests(submitted, ingested):
    from deltalake import DeltaTable

    def rows(lake, name: str) -> int:
        return DeltaTable(str(lake / name)).to_pyarrow_dataset().count_rows()

    names = ("ratings", "movies", "tags", "links", "rejects")
    on_cluster = {n: rows(submitted.lake, n) for n in names}
    assert on_cluster == {n: rows(ingested.lake, n) for n in names}
    assert on_cluster["ratings"] == 100_836
    assert "124,003 rows read = 124,003 accepted + 0 rejected" in submitted.logs["ingest"]


def test_the_jobs_ran_on_the_cluster(submitted):
    cluster = submitted.cluster
    apps = {a["name"]: a for a in cluster.state()["completedapps"]}
    for job in JOBS:
        app = apps.get(f"movierec-{job}")
        assert app, f"movierec-{job} not among the master's completed apps: {sorted(apps)}"
        assert app["state"] == "FINISHED", app
        assert app["cores"] == 2, app  # one executor on each worker

        # every executor got the Delta jars and the package from the driver; tasks ran there
        executors = sorted(p for p in (cluster.worker_dir / app["id"]).iterdir() if p.is_dir())
        assert len(executors) >= 2, f"{app['id']}: executors {executors}"
        tasks = 0
        for ex in executors:
            shipped = {p.name for p in ex.iterdir()}
            assert {"delta-spark_4.2_2.13-4.4.0.jar", "delta-storage-4.4.0.jar",
                    "movierec.zip"} <= shipped, f"{ex}: {sorted(shipped)}"
            log = (ex / "stderr").read_text(errors="replace")
            assert "delta-spark_4.2_2.13-4.4.0.jar to class loader" in log, tail(log)
            tasks += log.count("Finished task")
        assert tasks > 0, f"no task finished on the executors of {app['id']}"


def test_the_executors_got_the_runtime_package_only(submitted):
    with zipfile.ZipFile(submitted.pkg) as zf:
        names = zf.namelist()
    assert "movierec/model/topk.py" in names and "movierec/data/ingest.py" in names
    assert not [n for n in names if "embedded" in n]


def test_stop_leaves_no_daemon(cluster):
    # last in the module: it stops the module's cluster (the fixture's stop then finds nothing)
    pids = [int(f.read_text()) for f in cluster.pid_dir.glob("*.pid")]
    assert len(pids) == 3 and cluster.alive_workers() == 2
    assert Cluster.load(cluster.work_dir).master_url == cluster.master_url
    cluster.stop()
    cluster.stop()  # twice is fine
    assert not [p for p in pids if _spark_pid(p)], "daemons left running"
    assert not list(cluster.pid_dir.glob("*.pid"))
