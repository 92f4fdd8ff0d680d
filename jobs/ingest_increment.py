"""spark-submit jobs/ingest_increment.py [--source DIR] [--lake DIR] [--run-date D]: tonight's new ratings recorded once as arrivals: the files of a landing folder, or else the next replayed week of ratings_buffer."""

from movierec.core.cli import main_entry


def add_arguments(parser):
    parser.add_argument("--source", help="landing folder of new ratings.csv-format (and movies.csv-format) files")
    return {"source": "increment.source"}


if __name__ == "__main__":
    main_entry("ingest_increment", "movierec.data.increment:run", __doc__, add_arguments)
