"""When a nightly run retrains: every night, only after drift, or every N days (train.schedule)."""

from __future__ import annotations

from datetime import date

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from movierec.core import delta_io, tables as t
from movierec.core.config import Config
from movierec.core.settings import Schedule
from movierec.data.drift import DRIFT


def training_due(spark: SparkSession, cfg: Config, run_date: str) -> tuple[bool, str]:
    policy, lake = cfg["train.schedule"], cfg.path("lake")   # the schema allows only these three
    if policy == Schedule.ALWAYS:
        return True, "train.schedule=always"
    if policy == Schedule.ON_DRIFT:
        if not delta_io.exists(spark, lake, t.DRIFT_ALERTS):
            return True, "no drift check has run yet: training to be safe"
        alerts = delta_io.read(spark, lake, t.DRIFT_ALERTS).where(F.col(t.RUN_DATE) == F.lit(run_date))
        if alerts.limit(1).count() == 0:
            return True, f"no drift check for {run_date}: training to be safe"
        drifted = sorted(r[0] for r in alerts.where(F.col("verdict") == DRIFT).select("metric").collect())
        if drifted:
            return True, f"drift in {', '.join(drifted)}"
        return False, f"no drift on {run_date} (train.schedule=on_drift)"
    every = cfg["train.every_n_days"]
    if not delta_io.exists(spark, lake, t.GATE_DECISIONS):   # every training run gates once
        return True, "no training run yet"   # and below: the table exists but is empty
    last = delta_io.read(spark, lake, t.GATE_DECISIONS).agg(F.max(t.RUN_DATE)).first()[0]
    if last is None:
        return True, "no training run yet"
    days = (date.fromisoformat(run_date) - last).days
    if days >= every or days == 0:   # days == 0: a rerun of that date
        return True, f"last training on {last}, every {every} days"
    return False, f"last training on {last}, {days} of {every} days ago"
