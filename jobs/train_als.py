"""spark-submit jobs/train_als.py [--lake DIR] [--run-date D] [--mode full|refit]: cross-validated
ALS against baselines, evaluated on the chronological test split, tracked in MLflow, champion
gated. `--mode refit` skips CV and refits with the champion's parameters (the nightly run)."""

from movierec.core.cli import main_entry
from movierec.core.settings import TrainMode


def add_arguments(parser):
    parser.add_argument("--mode", choices=[m.value for m in TrainMode], help="train.mode")
    return {"mode": "train.mode"}


if __name__ == "__main__":
    main_entry("train_als", "movierec.model.train:run", __doc__, add_arguments)
