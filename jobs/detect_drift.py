"""spark-submit jobs/detect_drift.py [--lake DIR] [--run-date D]: compares the run date's new ratings with the training data; one drift_alerts row per metric."""

from movierec.cli import main_entry
from movierec.drift import run

if __name__ == "__main__":
    main_entry("detect_drift", run, __doc__)
