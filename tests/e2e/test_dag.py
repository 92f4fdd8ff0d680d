"""The nightly DAG, loaded and rendered by the real Airflow (tests/e2e/airflow_cli.py), all
checks sharing one AIRFLOW_HOME per session. Running it: test_dag_run.py."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.e2e.airflow_cli import AIRFLOW_BIN, DAG_ID, SPARK_CONN, airflow_env, output, run_airflow
from tests.helpers import ROOT

LOCK = ROOT / "conf" / "airflow-constraints.txt"
JOBS = ["ingest_increment", "detect_drift", "train_als", "recommend", "smoke_check"]
SUNDAY, MONDAY = "2026-11-22", "2026-11-23"
PG_PASSWORD = "not-a-real-pw-7f3e"   # must never show up in what Airflow renders or stores

# Loads the DagBag and reports what the tests check, as one JSON line. Runs with a metadata DB
# that cannot be opened, so any DB access while parsing the DAG file fails the import.
PROBE = textwrap.dedent("""
    import copy, json, os, sys
    import pendulum
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=sys.argv[1])
    out = {"import_errors": {k: str(v) for k, v in bag.import_errors.items()},
           "dag_ids": sorted(bag.dags),
           "pyspark_imported": any(m.split(".")[0] == "pyspark" for m in sys.modules)}
    dag = bag.dags.get(%(dag_id)r)
    if dag is not None:
        out["dag"] = {"catchup": dag.catchup, "max_active_runs": dag.max_active_runs,
                      "schedule": str(dag.schedule), "params": list(dag.params)}
        out["tasks"] = {t.task_id: {"classes": [c.__name__ for c in type(t).__mro__],
                                    "upstream": sorted(t.upstream_task_ids),
                                    "downstream": sorted(t.downstream_task_ids),
                                    "application": t.application, "args": t.application_args,
                                    "conn_id": t._conn_id, "env_vars": t.env_vars,
                                    "retries": t.retries, "backoff": t.retry_exponential_backoff}
                        for t in dag.tasks}
        train = dag.get_task("train_als")
        mode = train.application_args[train.application_args.index("--mode") + 1]
        out["mode"] = {}
        for day, full in json.loads(sys.argv[2]):
            params = copy.deepcopy(dag.params)
            params["full_retrain"] = full      # checked against the Param, as a trigger's conf is
            context = {"params": params.validate(), "logical_date": pendulum.parse(day), "ds": day}
            out["mode"][f"{day}/{full}"] = train.render_template(mode, context,
                                                                 dag.get_template_env())

    from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook
    out["masters"] = {}
    for form in json.loads(sys.argv[3]):
        os.environ["AIRFLOW_CONN_SPARK_MOVIEREC"] = form
        out["masters"][form] = SparkSubmitHook(conn_id="spark_movierec")._connection["master"]

    import movierec_nightly
    out["pg_env"] = movierec_nightly._pg_env()
    print("PROBE" + json.dumps(out))
""") % {"dag_id": DAG_ID}


@pytest.fixture(scope="session")
def probe(airflow_home, tmp_path_factory) -> dict:
    cases = [[SUNDAY, False], [MONDAY, False], [MONDAY, True]]
    forms = [SPARK_CONN, "spark://local%5B2%5D", "spark://local[2]", "spark://spark-master:7077"]
    env = airflow_env(tmp_path_factory.mktemp("airflow_probe"),
                      AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:////nonexistent/airflow.db",
                      AIRFLOW_CONN_POSTGRES_MOVIEREC="postgresql://rec:pw%40x1z@pg.internal:5433/films",
                      PYTHONPATH=str(ROOT / "dags"))
    proc = subprocess.run([str(AIRFLOW_BIN / "python"), "-c", PROBE, str(ROOT / "dags"),
                           json.dumps(cases), json.dumps(forms)],
                          env=env, capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("PROBE")]
    assert proc.returncode == 0 and lines, output(proc)[-3000:]
    return json.loads(lines[-1][len("PROBE"):])


def rendered_args(airflow_home: Path, task_id: str, day: str, **env: str) -> tuple[list[str], str]:
    """application_args as `airflow tasks render` shows them, and the whole render output."""
    proc = run_airflow(["tasks", "render", DAG_ID, task_id, day], airflow_env(airflow_home, **env))
    assert proc.returncode == 0, output(proc)[-3000:]
    lines = proc.stdout.splitlines()
    at = lines.index("# property: application_args")
    return ast.literal_eval(lines[at + 2]), proc.stdout


def test_airflow_venv_is_the_lock(airflow_home):
    frozen = subprocess.run([str(AIRFLOW_BIN / "python"), "-m", "pip", "freeze"],
                            capture_output=True, text=True, check=True).stdout.split()
    locked = [line for line in LOCK.read_text().splitlines() if line and not line.startswith("#")]
    assert sorted(frozen) == sorted(locked), "stale .venv-airflow: run `make setup`"


def test_dagbag_imports_without_touching_db_or_spark(probe):
    assert probe["import_errors"] == {}
    assert probe["dag_ids"] == [DAG_ID]
    assert not probe["pyspark_imported"]


def test_tasks_are_the_jobs_in_order(probe):
    tasks = probe["tasks"]
    assert set(tasks) == set(JOBS)
    for before, job, after in zip([None] + JOBS, JOBS, JOBS[1:] + [None]):
        assert tasks[job]["upstream"] == ([before] if before else [])
        assert tasks[job]["downstream"] == ([after] if after else [])


@pytest.mark.parametrize("job", JOBS)
def test_each_task_submits_its_job(probe, job):
    task = probe["tasks"][job]
    assert "SparkSubmitOperator" in task["classes"]
    assert task["application"] == str(ROOT / "jobs" / f"{job}.py")
    assert (ROOT / "jobs" / f"{job}.py").is_file()
    args = task["args"]
    assert args[args.index("--run-date") + 1] == "{{ ds }}"
    assert "--lake" in args and "--profile" in args
    if job == "ingest_increment":   # the landing folder, when the Variable names one
        assert "movierec_landing" in args[args.index("--source") + 1]
    assert task["conn_id"] == "spark_movierec"
    assert task["retries"] > 0 and task["backoff"] > 1


def test_spark_env_points_at_the_project(probe):
    venv_bin = ROOT / ".venv" / "bin"
    for job, task in probe["tasks"].items():
        env = task["env_vars"]
        assert env["SPARK_CONF_DIR"] == str(ROOT) and (ROOT / "spark-defaults.conf").is_file()
        assert env["MOVIEREC_HOME"] == str(ROOT)
        assert env["PYSPARK_PYTHON"] == env["PYSPARK_DRIVER_PYTHON"] == str(venv_bin / "python")
        assert env["PATH"].split(os.pathsep)[0] == str(venv_bin)
        assert (venv_bin / "spark-submit").is_file()
        assert env["SPARK_LOCAL_IP"] == "127.0.0.1"
        assert not any(name.startswith("MOVIEREC_PG") for name in env), job


def test_dag_settings(probe):
    assert probe["dag"] == {"catchup": False, "max_active_runs": 1, "schedule": "0 2 * * *",
                            "params": ["full_retrain"]}


def test_train_mode_full_on_sunday_or_on_demand(probe):
    assert probe["mode"] == {f"{SUNDAY}/False": "full", f"{MONDAY}/False": "refit",
                             f"{MONDAY}/True": "full"}


def test_airflow_renders_mode_variables_and_no_secret(airflow_home, tmp_path):
    lake = tmp_path / "var-lake"
    sunday, text = rendered_args(airflow_home, "train_als", SUNDAY,
                                 AIRFLOW_VAR_MOVIEREC_LAKE=str(lake), MOVIEREC_PG_PASSWORD=PG_PASSWORD)
    monday, _ = rendered_args(airflow_home, "train_als", MONDAY)
    assert sunday == ["--profile", "local", "--lake", str(lake), "--run-date", SUNDAY,
                      "--mode", "full"]
    assert monday == ["--profile", "local", "--lake", str(ROOT / "lake"), "--run-date", MONDAY,
                      "--mode", "refit"]
    assert PG_PASSWORD not in text


def test_spark_connection_resolves_to_local_master(probe):
    masters = probe["masters"]
    assert masters[SPARK_CONN] == "local[2]"
    assert masters["spark://local%5B2%5D"] == "local[2]"
    assert masters["spark://local[2]"] == "yarn"          # the trap the JSON form avoids
    assert masters["spark://spark-master:7077"] == "spark://spark-master:7077"   # docker/compose.yaml


def test_postgres_settings_from_the_airflow_connection(probe):
    assert probe["pg_env"] == {"MOVIEREC_PG_HOST": "pg.internal", "MOVIEREC_PG_PORT": "5433",
                               "MOVIEREC_PG_DB": "films", "MOVIEREC_PG_USER": "rec",
                               "MOVIEREC_PG_PASSWORD": "pw@x1z"}
