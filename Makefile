# Two entry points (see README): `make run` and `make test`. Both set up what they need first,
# and setting up again is a no-op unless pyproject.toml or the jar list changed.
SHELL := /bin/bash
ROOT := $(CURDIR)
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
PYTHON ?= python3

export SPARK_CONF_DIR := $(ROOT)
export SPARK_LOCAL_IP := 127.0.0.1
export PYSPARK_PYTHON := $(PY)
export PYSPARK_DRIVER_PYTHON := $(PY)
export PATH := $(VENV)/bin:$(PATH)

.PHONY: setup run test bench-ingest clean-lake

setup: $(VENV)/.installed .jars/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	bash conf/activate-hook.sh $(VENV) $(ROOT)
	touch $@

# Maven Central is reached with Maven itself: Spark's Ivy resolver cannot use this machine's setup.
.jars/.installed: conf/jvm-jars.pom.xml
	mvn -B -q -f conf/jvm-jars.pom.xml dependency:copy-dependencies \
	    -DexcludeTransitive=true -DoutputDirectory=$(ROOT)/.jars
	touch $@

run: setup
	spark-submit jobs/pipeline.py --profile local $(ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench-ingest: setup
	$(PY) bench/ingest_split.py $(ARGS)

clean-lake:
	rm -rf lake

include conf/airflow.mk
