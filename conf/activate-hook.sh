#!/usr/bin/env bash
# Makes `source .venv/bin/activate` enough to run `spark-submit jobs/<job>.py` from the project
# root: spark-submit then reads the project's spark-defaults.conf. Idempotent.
set -euo pipefail
venv=$1 root=$2
activate=$venv/bin/activate
marker="# movierec environment"
grep -qF "$marker" "$activate" && exit 0
cat >>"$activate" <<EOS
$marker
export SPARK_CONF_DIR="$root"
export SPARK_LOCAL_IP=127.0.0.1
export PYSPARK_PYTHON="$venv/bin/python"
export PYSPARK_DRIVER_PYTHON="$venv/bin/python"
EOS
