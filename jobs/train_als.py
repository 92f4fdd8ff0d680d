"""spark-submit jobs/train_als.py [--lake DIR] [--run-date D]: cross-validated ALS against
baselines, evaluated on the chronological test split, tracked in MLflow, champion gated."""

from movierec.cli import main_entry
from movierec.train import run

if __name__ == "__main__":
    main_entry("train_als", run, __doc__)
