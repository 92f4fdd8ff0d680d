"""spark-submit jobs/ingest.py --source PATH [--lake DIR]: a MovieLens release into Delta tables."""

from movierec.core.cli import main_entry


def add_arguments(parser):
    parser.add_argument("--source", help="MovieLens release folder or .zip (any published layout)")
    parser.add_argument("--force", action="store_const", const=True,
                        help="re-ingest even if this exact source was ingested last")
    return {"source": "ingest.source", "force": "ingest.force"}


if __name__ == "__main__":
    main_entry("ingest", "movierec.data.ingest:run", __doc__, add_arguments)
