"""spark-submit jobs/pipeline.py: the main job end to end (data -> ingest -> split).

Uses a MovieLens release from the raw folder (config raw_dir), else downloads one when the
network allows, else generates a synthetic release; says which.
"""

from movierec.core.cli import main_entry


def add_arguments(parser):
    parser.add_argument("--source", help="ingest this release instead of looking in raw_dir")
    return {"source": "ingest.source"}


if __name__ == "__main__":
    main_entry("pipeline", "movierec.pipeline:run", __doc__, add_arguments)
