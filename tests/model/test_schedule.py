"""When a nightly run retrains (train.schedule), on hand-made drift_alerts and gate_decisions."""

from __future__ import annotations

from datetime import datetime

from movierec.core import delta_io, tables as t
from movierec.model import schedule


def test_schedule_policies(spark, make_cfg, lake):
    always = make_cfg(train__schedule="always")
    assert schedule.training_due(spark, always, "2026-01-05")[0]
    on_drift = make_cfg(train__schedule="on_drift")
    assert schedule.training_due(spark, on_drift, "2026-01-05") == (True, "no drift check has run yet: training to be safe")
    alerts = [(datetime(2026, 1, 5).date(), "rating_psi", 0.01, 0.1, "ok", ""),
              (datetime(2026, 1, 6).date(), "rating_psi", 0.5, 0.1, "drift", "")]
    delta_io.overwrite(spark.createDataFrame(alerts, t.SCHEMAS[t.DRIFT_ALERTS]), lake, t.DRIFT_ALERTS)
    assert not schedule.training_due(spark, on_drift, "2026-01-05")[0]
    assert schedule.training_due(spark, on_drift, "2026-01-06") == (True, "drift in rating_psi")
    every = make_cfg(train__schedule="every_n_days", train__every_n_days=7)
    assert schedule.training_due(spark, every, "2026-01-05")[1] == "no training run yet"
    gated = [(datetime(2026, 1, 1).date(), "run", "2", "1", False, "kept") + (None,) * 12]
    delta_io.overwrite(spark.createDataFrame(gated, t.SCHEMAS[t.GATE_DECISIONS]), lake, t.GATE_DECISIONS)
    assert not schedule.training_due(spark, every, "2026-01-05")[0]
    assert schedule.training_due(spark, every, "2026-01-08")[0]
    assert schedule.training_due(spark, every, "2026-01-01")[0]   # a rerun of the training date
