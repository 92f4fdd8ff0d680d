"""The one Spark session factory, for jobs and tests alike.

Under spark-submit the JVM is already configured (spark-defaults.conf, --master, --jars), so only
session-level settings are applied. From plain Python (tests, notebooks) the project's
spark-defaults.conf is used too, by pointing SPARK_CONF_DIR at the project root before the JVM
starts, and its relative jar paths are made absolute so any working directory works.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from movierec.core.config import Config


def _read_defaults(path: Path) -> dict[str, str]:
    conf = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            conf[key] = value.strip()
    return conf


def _launched_by_spark_submit() -> bool:
    return "PYSPARK_GATEWAY_PORT" in os.environ


def get_spark(app_name: str, cfg: Config, extra: dict[str, str] | None = None) -> SparkSession:
    builder = SparkSession.builder.appName(app_name)
    if not _launched_by_spark_submit():
        defaults_file = cfg.root / "spark-defaults.conf"
        os.environ.setdefault("SPARK_CONF_DIR", str(cfg.root))
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Python workers must run this interpreter (numpy, pyarrow, movierec), not whatever
        # `python3` is first on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        defaults = _read_defaults(defaults_file)
        jars = [str((cfg.root / j).resolve()) for j in defaults.get("spark.jars", "").split(",") if j]
        missing = [j for j in jars if not Path(j).is_file()]
        if missing:
            raise RuntimeError(f"JVM jars missing: {missing}. Run `make setup` first.")
        builder = builder.config("spark.jars", ",".join(jars))
        if cfg["spark.master"]:
            builder = builder.master(cfg["spark.master"])
    for key, value in (extra or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.conf.set("spark.sql.shuffle.partitions", str(cfg["spark.shuffle_partitions"]))
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    for setting in cfg["spark.session_conf"]:
        spark.conf.set(*setting.split("=", 1))
    spark.sparkContext.setLogLevel(cfg["spark.log_level"])
    return spark
