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
# Spark runs one task per core; a multi-threaded native BLAS under each task only oversubscribes.
export OPENBLAS_NUM_THREADS := 1

.PHONY: setup run-setup run test bench-setup bench bench-als bench-ingest bench-smoke clean-lake

# `make run` needs the project's venv and the JVM jars only; `make setup` (and so `make test`)
# adds the test tools and Airflow's venv (conf/airflow.mk), which the jobs never import.
# --no-compile: byte-compiling every installed module took 30 s of a 75 s install; Python
# compiles what a run imports, once, as it imports it.
run-setup: $(VENV)/.installed .jars/.installed

setup: run-setup $(VENV)/.test-installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --no-compile -e .
	bash conf/activate-hook.sh $(VENV) $(ROOT)
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed
	$(PY) -m pip install -q --no-compile -e '.[test]'
	touch $@

# Maven Central is reached with Maven itself: Spark's Ivy resolver cannot use this machine's setup.
.jars/.installed: conf/jvm-jars.pom.xml
	mvn -B -q -f conf/jvm-jars.pom.xml dependency:copy-dependencies \
	    -DexcludeTransitive=true -DoutputDirectory=$(ROOT)/.jars
	touch $@

run: run-setup
	spark-submit jobs/pipeline.py --profile local $(ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# Benchmarks only: the `implicit` library, and a native BLAS for Spark's netlib (ALS runs about
# 2x faster on OpenBLAS than on the Java fallback). The Debian package needs root; without it
# the JVM keeps the Java BLAS and says so, and the benchmarks still run.
bench-setup: setup $(VENV)/.bench-installed
	@if [ -e /usr/lib/x86_64-linux-gnu/libblas.so.3 ] || [ -e /usr/lib/aarch64-linux-gnu/libblas.so.3 ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q --no-install-recommends libopenblas0-pthread >/dev/null \
	    || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends libopenblas0-pthread >/dev/null; }; \
	else echo "no libblas.so.3 and no root for apt-get: Spark's ALS uses the Java BLAS (slower)"; fi

$(VENV)/.bench-installed: pyproject.toml | $(VENV)/.installed
	$(PY) -m pip install -q --no-compile -e '.[test,bench]'
	touch $@

bench: bench-setup
	$(PY) bench/pipeline.py $(ARGS)

bench-als: bench-setup
	$(PY) bench/als_vs_implicit.py $(ARGS)

bench-ingest: setup
	$(PY) bench/ingest_split.py $(ARGS)

# The benchmark scripts at a tiny scale, end to end (about 4 minutes): not part of `make test`.
bench-smoke: bench-setup
	$(PY) -m pytest -m bench tests/e2e/test_bench_smoke.py $(PYTEST_ARGS)

clean-lake:
	rm -rf lake

include conf/airflow.mk
