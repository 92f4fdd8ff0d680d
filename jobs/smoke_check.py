"""spark-submit jobs/smoke_check.py [--lake DIR] [--run-date D]: checks the published recommendations in Delta and PostgreSQL for the run date."""

from movierec.core.cli import main_entry

if __name__ == "__main__":
    main_entry("smoke_check", "movierec.serve.smoke:run", __doc__)
