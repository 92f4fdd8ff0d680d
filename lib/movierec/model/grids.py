"""Parameter grids for Model.grid(): every combination of some axes, as plain dicts."""

from __future__ import annotations

import itertools
from typing import Iterable

from pyspark.ml.recommendation import ALS
from pyspark.ml.tuning import ParamGridBuilder


def product(**axes: Iterable) -> list[dict]:
    """Every combination of the axes' values, as dicts, the last axis varying fastest."""
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*axes.values())]


def als_grid(**axes: Iterable) -> list[dict]:
    """ALS grid points from Spark ML's ParamGridBuilder, keyed by ALS param name, so a typo in a
    name fails here rather than deep inside a fit."""
    als, builder = ALS(), ParamGridBuilder()
    for name, values in axes.items():
        builder = builder.addGrid(getattr(als, name), list(values))
    return [{p.name: v for p, v in point.items()} for point in builder.build()]
