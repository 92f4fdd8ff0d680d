"""spark-submit jobs/ingest_increment.py [--lake DIR] [--run-date D]: the next weekly slice of new ratings (the replayed buffer) appended to ratings_train, idempotently."""

from movierec.core.cli import main_entry

if __name__ == "__main__":
    main_entry("ingest_increment", "movierec.data.increment:run", __doc__)
