"""The one config loader: conf/base.yaml, then a profile, then `--set key=value` overrides,
validated against the typed schema in settings.py.

base.yaml holds every value; a profile or an override may only change keys the schema knows,
with values it accepts, so a typo or a bad value fails at start with one line naming the key.
Secrets are never read from here: they come from the environment (`secret`).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ValidationError

from movierec.core.errors import UserError
from movierec.core.masking import masked
from movierec.core.settings import Settings


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
    """Validated settings, read as cfg.train.k or with dotted keys: cfg["split.train_frac"]."""

    def __init__(self, settings: Settings, root: Path, profile: str):
        self.settings, self.root, self.profile = settings, root, profile

    def __getattr__(self, name: str) -> Any:
        if name == "settings":   # not set yet (copy, pickle): no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self.settings, name)

    def __getitem__(self, dotted: str) -> Any:
        node: Any = self.settings
        for part in dotted.split("."):
            if not isinstance(node, BaseModel) or part not in type(node).model_fields:
                raise KeyError(f"unknown config key {dotted!r}")
            node = getattr(node, part)
        return node

    def get(self, dotted: str, default: Any = None) -> Any:
        try:
            return self[dotted]
        except KeyError:
            return default

    @property
    def data(self) -> dict:
        """The settings as plain YAML values (enums as their strings)."""
        return self.settings.model_dump(mode="json")

    def path(self, dotted: str) -> Path:
        """A path setting, resolved against the project root when relative."""
        p = Path(os.path.expanduser(str(self[dotted])))
        return (p if p.is_absolute() else self.root / p).resolve()

    def with_overrides(self, overrides: dict[str, Any]) -> Config:
        data = self.data
        for key, value in overrides.items():
            _assign(data, key, value)
        return Config(_validated(data), self.root, self.profile)

    def describe(self) -> str:
        """The config for a log line, every URI's credentials masked."""
        return yaml.safe_dump(masked(self.data), sort_keys=True, default_flow_style=False).strip()


def _assign(data: dict, dotted: str, value: Any) -> None:
    """Sets one dotted key; a dict value is merged into the section it names."""
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        if not isinstance(node.get(part), dict):
            raise ConfigError(f"unknown config key {dotted!r} (not in conf/base.yaml)")
        node = node[part]
    if isinstance(value, dict) and isinstance(node.get(leaf), dict):
        for key, inner in value.items():
            _assign(node[leaf], key, inner)
    else:
        node[leaf] = value


def _validated(data: dict) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe(e)) from None


def _describe(error: ValidationError) -> str:
    """One line for all of pydantic's errors, one clause per key; the branches of a union
    (e.g. synthetic.scale: a preset name or a number) are joined by "or"."""
    by_key: dict[str, list[dict]] = {}
    for err in error.errors():
        # union branches add loc parts like "literal['small']" or "constrained-int"
        key = ".".join(str(p) for p in err["loc"] if isinstance(p, int) or str(p).isidentifier())
        by_key.setdefault(key, []).append(err)
    clauses = []
    for key, errs in by_key.items():
        first = errs[0]
        if first["type"] == "extra_forbidden":
            clauses.append(f"unknown config key {key!r} (not in conf/base.yaml)")
        elif first["type"] == "missing":
            clauses.append(f"config key {key!r} is missing from conf/base.yaml")
        elif first["type"] == "value_error":
            clauses.append(f"config key {key!r}: {first['msg'].removeprefix('Value error, ')}")
        else:
            wants = " or ".join(dict.fromkeys(e["msg"][0].lower() + e["msg"][1:] for e in errs))
            clauses.append(f"config key {key!r}: {wants}, got {first['input']!r}")
    return "; ".join(clauses)


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"--set wants key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw   # not YAML (e.g. a stray bracket): the schema says whether it fits
    return key.strip(), value


def load_config(profile: str | None = None, overrides: Iterable[str] = (),
                root: Path | None = None) -> Config:
    root = root or project_root()
    conf_dir = root / "conf"
    base_file = conf_dir / "base.yaml"
    if not base_file.is_file():
        raise ConfigError(f"{base_file} not found: is MOVIEREC_HOME the project root?")
    data = yaml.safe_load(base_file.read_text()) or {}
    if profile and profile != "base":
        profile_file = conf_dir / f"{profile}.yaml"
        if not profile_file.is_file():
            known = sorted(p.stem for p in conf_dir.glob("*.yaml"))
            raise ConfigError(f"unknown profile {profile!r}: no {profile_file} (known: {known})")
        for key, value in (yaml.safe_load(profile_file.read_text()) or {}).items():
            _assign(data, key, copy.deepcopy(value))
    for key, value in (parse_override(o) for o in overrides):
        _assign(data, key, value)
    return Config(_validated(data), root, profile or "base")


def secret(name: str) -> str | None:
    """Secrets come from the environment only, so they never land in config files or logs."""
    return os.environ.get(name)
