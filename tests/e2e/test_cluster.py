"""The jobs, unchanged, on a Spark standalone cluster on 127.0.0.1 (one master, two workers).

They are submitted as a user would (tests/e2e/cluster_jobs.py), in the background from session
start (tests/background.py). The tables are read back with the `deltalake` package.
"""

from __future__ import annotations

import zipfile

import pytest

from movierec_embedded.cluster import Cluster
from movierec_embedded.procs import cmdline
from tests.e2e.cluster_jobs import JOBS
from tests.helpers import tail

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def cluster_run(background):
    run = background.cluster()
    yield run
    run.cluster.stop()


def _spark_pid(pid: int) -> bool:
    return any("org.apache.spark" in arg for arg in cmdline(pid) or [])


def test_the_cluster_ingests_the_whole_release(cluster_run):
    from deltalake import DeltaTable

    def rows(name: str) -> int:
        return DeltaTable(str(cluster_run.lake / name)).to_pyarrow_dataset().count_rows()

    made = cluster_run.release
    assert (rows("ratings"), rows("movies"), rows("tags"), rows("rejects")) == (
        made["n_ratings"], made["n_movies_listed"], made["n_tags"], 0)
    read = made["n_ratings"] + 2 * made["n_movies_listed"] + made["n_tags"]   # + links.csv
    assert f"{read:,} rows read = {read:,} accepted + 0 rejected" in cluster_run.logs["ingest"]


def test_the_jobs_ran_on_the_cluster(cluster_run):
    cluster = cluster_run.cluster
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


def test_the_executors_got_the_runtime_package_only(cluster_run):
    with zipfile.ZipFile(cluster_run.pkg) as zf:
        names = zf.namelist()
    assert "movierec/model/topk.py" in names and "movierec/data/ingest.py" in names
    assert not [n for n in names if "embedded" in n]


def test_stop_leaves_no_daemon(cluster_run):
    # last in the module: it stops the module's cluster (the fixture's stop then finds nothing)
    cluster = cluster_run.cluster
    pids = [int(f.read_text()) for f in cluster.pid_dir.glob("*.pid")]
    assert len(pids) == 3 and cluster.alive_workers() == 2
    assert Cluster.load(cluster.work_dir).master_url == cluster.master_url
    cluster.stop()
    cluster.stop()  # twice is fine
    assert not [p for p in pids if _spark_pid(p)], "daemons left running"
    assert not list(cluster.pid_dir.glob("*.pid"))
