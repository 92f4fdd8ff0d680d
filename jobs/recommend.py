"""spark-submit jobs/recommend.py [--lake DIR] [--run-date D] [--k K]: the champion's top-K for
every user with a known rating, to Delta (recommendations, recommendations_latest,
popular_movies) and PostgreSQL, published atomically."""

from movierec.core.cli import main_entry


def add_arguments(parser):
    parser.add_argument("--k", type=int, help="movies per user (recommend.k)")
    parser.add_argument("--no-postgres", dest="publish_postgres", action="store_const", const=False,
                        help="publish to Delta only")
    return {"k": "recommend.k", "publish_postgres": "recommend.publish_postgres"}


if __name__ == "__main__":
    main_entry("recommend", "movierec.serve.recommend:run", __doc__, add_arguments,
               preflight="movierec.serve.recommend:preflight")
