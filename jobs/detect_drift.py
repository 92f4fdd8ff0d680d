"""spark-submit jobs/detect_drift.py [--lake DIR] [--run-date D]: compares the run date's new ratings with the training data; one drift_alerts row per metric."""

from movierec.core.cli import main_entry

if __name__ == "__main__":
    main_entry("detect_drift", "movierec.data.drift:run", __doc__)
