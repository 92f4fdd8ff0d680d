"""movierec: a nightly batch movie recommender on Spark, Delta Lake and MLflow."""

__version__ = "0.1.0"
