"""The models the project compares, in the order they are fitted (a model after those it
requires). Adding a model: one class implementing model.base.Model, one line here, and its
config section (core/settings.py and conf/base.yaml)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from pyspark.sql import DataFrame

from movierec.core.config import Config, ConfigError
from movierec.core.logs import stage
from movierec.model.als import AlsBiased, AlsImplicit, AlsPlain
from movierec.model.base import Fitted, Model, Servable
from movierec.model.baselines import Bias, GlobalMean, Popular, PopularRecent, Trending
from movierec.model.ease import Ease
from movierec.model.knn import ItemKnn
from movierec.model.hybrid import Hybrid

log = logging.getLogger(__name__)

MODELS: tuple[type[Model], ...] = (
    GlobalMean, Bias, AlsBiased, AlsPlain, AlsImplicit, Ease, ItemKnn, Popular, PopularRecent, Trending,
    Hybrid)


def build(cfg: Config) -> dict[str, Model]:
    """Every model, by name, configured from cfg; checks the served and baseline models."""
    models: dict[str, Model] = {}
    for cls in MODELS:
        missing = [dep for dep in cls.requires if dep not in models]
        if missing:
            raise ValueError(f"model {cls.name!r} requires {missing}, which must come before it")
        models[cls.name] = cls(cfg)
    served, baseline = cfg.train.served_model, cfg.train.baseline_model
    servable = sorted(name for name, m in models.items() if isinstance(m, Servable))
    if not isinstance(models.get(served), Servable):
        raise ConfigError(f"config key 'train.served_model': {served!r} is not a servable model "
                          f"(servable: {servable})")
    if not getattr(models.get(baseline), "ranks", False):
        rankers = sorted(name for name, m in models.items() if m.ranks)
        raise ConfigError(f"config key 'train.baseline_model': {baseline!r} is not a ranking "
                          f"model (rankers: {rankers})")
    return models


def runnable(models: Mapping[str, Model], ratings: DataFrame) -> tuple[dict[str, Model], dict[str, str]]:
    """The models that can run on `ratings`, and why each other one cannot (Model.skip_reason);
    the served model and what any kept model requires are never skipped silently."""
    skipped = {name: why for name, m in models.items() if (why := m.skip_reason(ratings))}
    kept = {name: m for name, m in models.items() if name not in skipped}
    needed = {dep for m in kept.values() for dep in m.requires} & set(skipped)
    served = [name for name, m in models.items() if isinstance(m, Servable) and name in skipped]
    if needed or served:
        raise ConfigError(f"models {sorted(needed | set(served))} cannot run here: "
                          f"{ {n: skipped[n] for n in needed | set(served)} }")
    for name, why in skipped.items():
        log.warning("model %s skipped: %s", name, why)
    return kept, skipped


def served(cfg: Config) -> Servable:
    return build(cfg)[cfg.train.served_model]


def with_requirements(models: dict[str, Model], name: str) -> dict[str, Model]:
    """`name` and every model it requires, transitively, in the catalog's fitting order."""
    wanted, todo = set(), [name]
    while todo:
        current = todo.pop()
        if current not in wanted:
            wanted.add(current)
            todo.extend(models[current].requires)
    return {n: m for n, m in models.items() if n in wanted}


def fit_all(models: Mapping[str, Model], train: DataFrame, params: Mapping[str, dict]) -> dict[str, Fitted]:
    """Every model fitted on `train` with its chosen parameters, each after those it requires."""
    fitted: dict[str, Fitted] = {}
    for name, model in models.items():
        with stage(log, f"fit {name}"):
            fitted[name] = model.fit(train, params[name], {d: fitted[d] for d in model.requires})
    return fitted
