"""movierec_nightly: ingest the day's increment, check drift, retrain, publish, smoke-test.

Tonight's ratings come from the landing folder in the `movierec_landing` Variable (or
MOVIEREC_LANDING), else from the replayed buffer. train_als fits the served model on every known
rating and gates it (or skips, per train.schedule); recommend folds in users with newer ratings,
scores the lists that were live, and publishes.

Each task is one `spark-submit jobs/<task_id>.py --run-date {{ ds }}` (see dags/README.md for
the Variables, environment and connections it reads). Nothing here touches Spark, PostgreSQL or
the metadata DB at parse time: Variables are read by Jinja when a task runs.
"""

from __future__ import annotations

import contextlib
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Param

# The DAG file ships inside the repository, so its parent folder is the code it runs.
HOME = os.environ.get("MOVIEREC_HOME") or str(Path(__file__).resolve().parents[1])
VENV_BIN = f"{HOME}/.venv/bin"
SPARK_CONN_ID = "spark_movierec"
PG_CONN_ID = "postgres_movierec"
PG_VARS = ("MOVIEREC_PG_HOST", "MOVIEREC_PG_PORT", "MOVIEREC_PG_DB", "MOVIEREC_PG_USER",
           "MOVIEREC_PG_PASSWORD")

# Airflow Variable first (AIRFLOW_VAR_* or the metadata DB, looked up when the task renders),
# then this worker's environment, then the repository's own defaults.
LAKE = "{{ var.value.get('movierec_lake', %r) }}" % os.environ.get("MOVIEREC_LAKE", f"{HOME}/lake")
PROFILE = "{{ var.value.get('movierec_profile', %r) }}" % os.environ.get("MOVIEREC_PROFILE", "local")

# Full cross-validated retrain on Sundays or on demand; otherwise refit the last best params.
TRAIN_MODE = "{{ 'full' if params.full_retrain or logical_date.weekday() == 6 else 'refit' }}"

JOBS = ["ingest_increment", "detect_drift", "train_als", "recommend", "smoke_check"]


class MovierecSparkSubmit(SparkSubmitOperator):
    """spark-submit from the repository root, with the PostgreSQL settings added only now.

    spark-defaults.conf names the jars relative to the root. The MOVIEREC_PG_* values are merged
    after templates were rendered, so the password never reaches the rendered fields or the logs.
    """

    def execute(self, context):
        self.env_vars = {**(self.env_vars or {}), **_pg_env()}
        with contextlib.chdir(self.env_vars["MOVIEREC_HOME"]):
            return super().execute(context)


def _pg_env() -> dict[str, str]:
    """MOVIEREC_PG_* of this worker; else the `postgres_movierec` connection; else none, and the
    jobs fall back to their embedded server."""
    found = {name: os.environ[name] for name in PG_VARS if os.environ.get(name)}
    if found:
        return found
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(PG_CONN_ID)
    except AirflowNotFoundException:
        return {}
    values = zip(PG_VARS, (conn.host, conn.port, conn.schema, conn.login, conn.password))
    return {name: str(value) for name, value in values if value}


def spark_env() -> dict[str, str]:
    """What makes `spark-submit` the project's pyspark with the project's spark-defaults.conf.

    The provider only takes a binary name, looked up on the PATH given here.
    """
    env = {
        "MOVIEREC_HOME": HOME,
        "SPARK_CONF_DIR": os.environ.get("MOVIEREC_SPARK_CONF_DIR", HOME),
        "PYSPARK_PYTHON": f"{VENV_BIN}/python",
        "PYSPARK_DRIVER_PYTHON": f"{VENV_BIN}/python",
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
    }
    # A local run stays on loopback; in containers (set to "") Spark must use the container's
    # own address, which executors on other hosts can reach.
    local_ip = os.environ.get("MOVIEREC_SPARK_LOCAL_IP", "127.0.0.1")
    return env | ({"SPARK_LOCAL_IP": local_ip} if local_ip else {})


# A landing folder of new rating files for ingest_increment; empty: replay ratings_buffer.
LANDING = "{{ var.value.get('movierec_landing', %r) }}" % os.environ.get("MOVIEREC_LANDING", "")


def job_args(task_id: str) -> list[str]:
    args = ["--profile", PROFILE, "--lake", LAKE, "--run-date", "{{ ds }}"]
    if task_id == "ingest_increment":
        return args + ["--source", LANDING]
    return args + ["--mode", TRAIN_MODE] if task_id == "train_als" else args


default_args = {
    "owner": "movierec",
    # MOVIEREC_TASK_RETRIES=0 lets `airflow dags test` fail at once instead of waiting out retries.
    "retries": int(os.environ.get("MOVIEREC_TASK_RETRIES", "2")),
    "retry_delay": timedelta(minutes=5),
    "retry_exponential_backoff": 2.0,        # 5 min, then 10 min
    "max_retry_delay": timedelta(hours=1),
    "execution_timeout": timedelta(hours=6),
}

with DAG(
    dag_id="movierec_nightly",
    description=__doc__.splitlines()[0],
    schedule="0 2 * * *",
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),   # ds and the Sunday check are UTC
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    params={"full_retrain": Param(False, type="boolean",
                                  description="cross-validated retrain even if it is not Sunday")},
    tags=["movierec"],
) as dag:
    tasks = [
        MovierecSparkSubmit(
            task_id=job,
            application=f"{HOME}/jobs/{job}.py",
            application_args=job_args(job),
            name=f"movierec-{job}",
            conn_id=SPARK_CONN_ID,
            env_vars=spark_env(),
        )
        for job in JOBS
    ]
    for upstream, downstream in zip(tasks, tasks[1:]):
        upstream >> downstream
