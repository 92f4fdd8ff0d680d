"""movierec: a nightly batch movie recommender on Spark, Delta Lake and MLflow.

One package per stage, each depending only on those below it (checked by import-linter, see
pyproject.toml): `core` <- `data` <- `model` <- `serve` <- `pipeline` (all stages in one run).
"""

__version__ = "0.1.0"
