"""Running the real Airflow of .venv-airflow from tests: it is not in this venv (conf/airflow.mk),
so every call is its python or its `airflow` CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess

from tests.helpers import ROOT, TEST_JVM_OPTS

AIRFLOW_BIN = ROOT / ".venv-airflow" / "bin"
DAG_ID = "movierec_nightly"
SPARK_CONN = '{"conn_type": "spark", "host": "local[2]"}'


def airflow_env(airflow_home, **extra: str) -> dict[str, str]:
    """This process's environment without Airflow, Spark, MLflow or movierec settings of its own
    (they would change what the DAG renders), plus a local Airflow for `airflow_home`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "MOVIEREC_", "MLFLOW_", "PYSPARK_", "SPARK_"))
           or k == "MOVIEREC_HOME"}
    env.update(AIRFLOW_HOME=str(airflow_home), AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
               AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW_CONN_SPARK_MOVIEREC=SPARK_CONN,
               **TEST_JVM_OPTS)
    env.update(extra)
    return env


def run_airflow(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(AIRFLOW_BIN / "airflow"), *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=env["AIRFLOW_HOME"])


def run_dags_test(airflow_home, logical_date: str, env: dict[str, str] | None = None, *,
                  dag_id: str = DAG_ID, conf: dict | None = None,
                  timeout: float = 1800) -> subprocess.CompletedProcess:
    """`airflow dags test <dag_id> <logical_date>`: every task in order, in-process, against the
    AIRFLOW_HOME of `airflow_home` (migrated). `env` is added over airflow_env(); retries are off
    unless it sets MOVIEREC_TASK_RETRIES. Exit code 0 only if the whole run succeeded."""
    full_env = airflow_env(airflow_home, **{"MOVIEREC_TASK_RETRIES": "0", **(env or {})})
    args = ["dags", "test", dag_id, logical_date]
    if conf is not None:
        args += ["--conf", json.dumps(conf)]
    return run_airflow(args, full_env, timeout=timeout)


def output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr
