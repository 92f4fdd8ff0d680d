# Airflow, which schedules dags/movierec_nightly.py. Included by the Makefile (uses its ROOT and
# PYTHON). It lives in its own venv: in .venv it would move packages the project's pins were
# tested with (it downgrades fastapi, which mlflow's server uses). Tasks still run the project's
# pyspark: the DAG puts .venv/bin first on spark-submit's PATH.
#
# conf/airflow-constraints.txt is the tested lock (pip freeze of a working install); the venv is
# rebuilt from it, from scratch, only when the lock or this file changes. `make airflow-lock`
# re-resolves it from PyPI after a version bump below.
AIRFLOW_VERSION := 3.3.2
AIRFLOW_SPARK_PROVIDER_VERSION := 6.3.4
# [postgres]: the compose stack keeps Airflow's metadata in PostgreSQL.
AIRFLOW_REQS := 'apache-airflow[postgres]==$(AIRFLOW_VERSION)' \
                'apache-airflow-providers-apache-spark==$(AIRFLOW_SPARK_PROVIDER_VERSION)'
AIRFLOW_VENV := $(ROOT)/.venv-airflow
AIRFLOW_LOCK := $(ROOT)/conf/airflow-constraints.txt

# Local runs: SQLite metadata under work/airflow (ignored), DAGs from dags/, no examples, Spark
# in-process on 2 cores. Override the connection with AIRFLOW_SPARK_CONN='spark://host:7077'.
# "local[2]" must stay in the JSON form: the URI spark://local[2] falls back to yarn.
AIRFLOW_SPARK_CONN ?= {"conn_type": "spark", "host": "local[2]"}
AIRFLOW_RUN = env AIRFLOW_HOME=$(ROOT)/work/airflow AIRFLOW__CORE__DAGS_FOLDER=$(ROOT)/dags \
    AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW_CONN_SPARK_MOVIEREC='$(AIRFLOW_SPARK_CONN)' \
    $(AIRFLOW_VENV)/bin/airflow

.PHONY: airflow-setup airflow-init airflow-standalone airflow-dags-test airflow-lock

setup: airflow-setup

airflow-setup: $(AIRFLOW_VENV)/.installed

$(AIRFLOW_VENV)/.installed: $(AIRFLOW_LOCK) $(ROOT)/conf/airflow.mk
	rm -rf $(AIRFLOW_VENV)
	$(PYTHON) -m venv $(AIRFLOW_VENV)
	echo '*' > $(AIRFLOW_VENV)/.gitignore
	$(AIRFLOW_VENV)/bin/python -m pip install -q --upgrade pip
	$(AIRFLOW_VENV)/bin/python -m pip install -q --no-compile -c $(AIRFLOW_LOCK) $(AIRFLOW_REQS)
	touch $@

airflow-init: airflow-setup
	$(AIRFLOW_RUN) db migrate

# The UI on http://localhost:8080 (login in work/airflow/simple_auth_manager_passwords.json*).
airflow-standalone: airflow-init
	$(AIRFLOW_RUN) standalone

# One whole run in-process, e.g. `make airflow-dags-test DATE=2026-11-22`.
airflow-dags-test: airflow-init
	$(AIRFLOW_RUN) dags test movierec_nightly $(or $(DATE),$(shell date -u +%F))

airflow-lock:
	rm -rf $(ROOT)/work/airflow-lock-venv
	$(PYTHON) -m venv $(ROOT)/work/airflow-lock-venv
	$(ROOT)/work/airflow-lock-venv/bin/python -m pip install -q --upgrade pip
	$(ROOT)/work/airflow-lock-venv/bin/python -m pip install -q $(AIRFLOW_REQS)
	{ echo "# Tested lock for .venv-airflow: pip freeze of $(AIRFLOW_REQS)"; \
	  echo "# on Python $$($(ROOT)/work/airflow-lock-venv/bin/python -c 'import platform; print(platform.python_version())'). Regenerate with make airflow-lock; used as pip install -c."; \
	  $(ROOT)/work/airflow-lock-venv/bin/python -m pip freeze; } > $(AIRFLOW_LOCK)
	rm -rf $(ROOT)/work/airflow-lock-venv
