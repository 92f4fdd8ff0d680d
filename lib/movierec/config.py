"""The one config loader: conf/base.yaml, then a profile, then `--set key=value` overrides.

Every key a profile or override names must exist in base.yaml with a compatible type, so a typo
fails at start instead of being ignored. Secrets are never read from here (see `secret`).
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any, Iterable

import yaml

from movierec.errors import UserError

log = logging.getLogger(__name__)


class ConfigError(UserError, ValueError):
    pass


def project_root() -> Path:
    """The repository root: MOVIEREC_HOME, else the folder above lib/ that holds conf/base.yaml."""
    if os.environ.get("MOVIEREC_HOME"):
        return Path(os.environ["MOVIEREC_HOME"]).resolve()
    for parent in Path(__file__).resolve().parents:
        if (parent / "conf" / "base.yaml").is_file():
            return parent
    return Path.cwd()


class Config:
    """Nested settings read with dotted keys: cfg["split.train_frac"]."""

    def __init__(self, data: dict, root: Path, profile: str):
        self.data, self.root, self.profile = data, root, profile

    def __getitem__(self, dotted: str) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(f"unknown config key {dotted!r}")
            node = node[part]
        return node

    def get(self, dotted: str, default: Any = None) -> Any:
        try:
            return self[dotted]
        except KeyError:
            return default

    def path(self, dotted: str) -> Path:
        """A path setting, resolved against the project root when relative."""
        p = Path(os.path.expanduser(str(self[dotted])))
        return (p if p.is_absolute() else self.root / p).resolve()

    def with_overrides(self, overrides: dict[str, Any]) -> "Config":
        data = copy.deepcopy(self.data)
        for key, value in overrides.items():
            _assign(data, key, value)
        return Config(data, self.root, self.profile)

    def describe(self) -> str:
        return yaml.safe_dump(self.data, sort_keys=True, default_flow_style=False).strip()


def _assign(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            raise ConfigError(f"unknown config key {dotted!r}")
        node = node[part]
    leaf = parts[-1]
    if leaf not in node:
        raise ConfigError(f"unknown config key {dotted!r} (not in conf/base.yaml)")
    node[leaf] = _checked(dotted, node[leaf], value)


def _checked(key: str, current: Any, value: Any) -> Any:
    if current is None or value is None:
        return value
    if isinstance(current, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} is a section, got {value!r}")
        merged = dict(current)
        for k, v in value.items():
            if k not in current:
                raise ConfigError(f"unknown config key {key}.{k!r} (not in conf/base.yaml)")
            merged[k] = _checked(f"{key}.{k}", current[k], v)
        return merged
    if isinstance(current, bool) != isinstance(value, bool):
        raise ConfigError(f"config key {key!r} wants {type(current).__name__}, got {value!r}")
    if isinstance(current, float) and isinstance(value, int):
        return float(value)
    if isinstance(current, str) and isinstance(value, (int, float)):
        return value  # e.g. synthetic.scale: a preset name or a number of ratings
    if not isinstance(value, type(current)):
        raise ConfigError(f"config key {key!r} wants {type(current).__name__}, got {value!r}")
    return value


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"--set wants key=value, got {text!r}")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw.strip() else None


def load_config(profile: str | None = None, overrides: Iterable[str] = (),
                root: Path | None = None) -> Config:
    root = root or project_root()
    conf_dir = root / "conf"
    base_file = conf_dir / "base.yaml"
    if not base_file.is_file():
        raise ConfigError(f"{base_file} not found: is MOVIEREC_HOME the project root?")
    data = yaml.safe_load(base_file.read_text()) or {}
    cfg = Config(data, root, profile or "base")
    if profile and profile != "base":
        profile_file = conf_dir / f"{profile}.yaml"
        if not profile_file.is_file():
            known = sorted(p.stem for p in conf_dir.glob("*.yaml"))
            raise ConfigError(f"unknown profile {profile!r}: no {profile_file} (known: {known})")
        cfg = cfg.with_overrides(yaml.safe_load(profile_file.read_text()) or {})
    cfg = cfg.with_overrides(dict(parse_override(o) for o in overrides))
    _validate(cfg)
    return cfg


def _validate(cfg: Config) -> None:
    train, test = cfg["split.train_frac"], cfg["split.test_frac"]
    if not (0 < train < 1 and 0 < test < 1 and train + test < 1):
        raise ConfigError(f"split fractions must be in (0, 1) and leave a buffer: "
                          f"train={train}, test={test}")
    if cfg["split.batch_days"] < 1:
        raise ConfigError("split.batch_days must be at least 1")
    if not 1900 <= cfg["ingest.min_year"] <= 2100:
        raise ConfigError(f"ingest.min_year out of range: {cfg['ingest.min_year']}")


def secret(name: str) -> str | None:
    """Secrets come from the environment only, so they never land in config files or logs."""
    return os.environ.get(name)
