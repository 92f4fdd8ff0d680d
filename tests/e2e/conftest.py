"""Fixtures of the end-to-end tests: one migrated Airflow home for the session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.airflow_cli import AIRFLOW_BIN, airflow_env, output, run_airflow


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> Path:
    if not (AIRFLOW_BIN / "airflow").is_file():
        pytest.fail(f"Airflow is not installed in {AIRFLOW_BIN.parent}: run `make setup` "
                    "(it installs it from conf/airflow-constraints.txt)")
    home = tmp_path_factory.mktemp("airflow_home")
    proc = run_airflow(["db", "migrate"], airflow_env(home))
    assert proc.returncode == 0, output(proc)[-3000:]
    return home
