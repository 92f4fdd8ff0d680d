"""spark-submit jobs/smoke_check.py [--lake DIR] [--run-date D]: checks the published recommendations in Delta and PostgreSQL for the run date."""

from movierec.cli import main_entry
from movierec.smoke import run

if __name__ == "__main__":
    main_entry("smoke_check", run, __doc__)
