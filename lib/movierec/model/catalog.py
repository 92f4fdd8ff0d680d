"""The models the project compares, in the order they are fitted (a model after those it
requires). Adding a model: one class implementing model.base.Model, one line here, and its
config section (core/settings.py and conf/base.yaml)."""

from __future__ import annotations

from movierec.core.config import Config, ConfigError
from movierec.model.als import AlsBiased, AlsImplicit, AlsPlain
from movierec.model.base import Model, Servable
from movierec.model.baselines import Bias, GlobalMean, Popular, PopularRecent, Trending
from movierec.model.hybrid import Hybrid

MODELS: tuple[type[Model], ...] = (
    GlobalMean, Bias, AlsBiased, AlsPlain, AlsImplicit, Popular, PopularRecent, Trending, Hybrid)


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


def served(cfg: Config) -> Servable:
    return build(cfg)[cfg.train.served_model]
