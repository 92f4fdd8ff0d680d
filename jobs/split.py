"""spark-submit jobs/split.py [--lake DIR]: ratings into chronological train / test / buffer."""

from movierec.core.cli import main_entry

if __name__ == "__main__":
    main_entry("split", "movierec.data.split:run", __doc__)
