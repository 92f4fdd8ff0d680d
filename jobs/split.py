"""spark-submit jobs/split.py [--lake DIR]: ratings into chronological train / test / buffer."""

from movierec.cli import main_entry
from movierec.split import run

if __name__ == "__main__":
    main_entry("split", run, __doc__)
