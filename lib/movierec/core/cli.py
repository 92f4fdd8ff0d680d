"""What every job's main() shares: arguments, config, logging, the Spark session."""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from typing import Callable

from movierec.core import job_guard
from movierec.core.config import Config, ConfigError, load_config
from movierec.core.errors import UserError
from movierec.core.logs import configure_logging
from movierec.core.spark import get_spark

log = logging.getLogger("movierec.job")

USER_ERRORS = (UserError, FileNotFoundError)


def _date(text: str) -> str:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise argparse.ArgumentTypeError(f"--run-date wants YYYY-MM-DD, got {text!r}")
    return text


def base_parser(job: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"spark-submit jobs/{job}.py", description=description)
    p.add_argument("--profile", default="local", help="conf/<profile>.yaml over conf/base.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set split.train_frac=0.8 (repeatable)")
    p.add_argument("--lake", help="root folder of the Delta lakehouse (config key: lake)")
    p.add_argument("--run-date", type=_date, help="logical date of this run, YYYY-MM-DD")
    return p


def config_from_args(args: argparse.Namespace, arg_keys: dict[str, str]) -> Config:
    """Config from profile and --set, with job flags (arg name -> config key) applied last."""
    overrides = list(args.overrides)
    if args.lake:
        overrides.append(f"lake={args.lake}")
    cfg = load_config(args.profile, overrides)
    flags = {key: getattr(args, name) for name, key in arg_keys.items()
             if getattr(args, name, None) is not None}
    return cfg.with_overrides(flags) if flags else cfg


def _resolve(function: Callable | str) -> Callable:
    if isinstance(function, str):
        module, _, name = function.partition(":")
        return getattr(importlib.import_module(module), name)
    return function


def job_main(job: str, argv: list[str], run: Callable | str, description: str,
             add_arguments: Callable[[argparse.ArgumentParser], dict[str, str]] | None = None,
             preflight: Callable | str | None = None) -> int:
    """run: the job's run(spark, cfg, run_date), or its "module:function" name, imported only
    once the config is valid, so a bad flag fails in a second instead of after MLflow's import.
    preflight(cfg): checks what must answer (a server), before the Spark session starts."""
    parser = base_parser(job, description)
    arg_keys = add_arguments(parser) if add_arguments else {}
    args = parser.parse_args(argv)
    configure_logging(job, args.run_date)
    try:
        cfg = config_from_args(args, arg_keys)
    except ConfigError as e:
        log.error("%s", e)
        return 2
    log.info("config (profile %s):\n%s", cfg.profile, cfg.describe())
    run = _resolve(run)
    try:
        if preflight is not None:
            _resolve(preflight)(cfg)
    except USER_ERRORS as e:
        log.error("%s failed: %s", job, e)
        return 1
    spark = get_spark(f"movierec-{job}", cfg)
    try:
        result = run(spark, cfg, args.run_date)
        if result is not None:
            log.info("result: %s", result)
        return 0
    except USER_ERRORS as e:
        log.error("%s failed: %s", job, e)
        return 1
    except Exception as e:
        if (storage := job_guard.storage_failure(e)) is None:
            raise
        log.error("%s failed: %s", job, storage)
        return 1
    finally:
        spark.stop()


def main_entry(job: str, run: Callable | str, description: str,
               add_arguments: Callable | None = None, preflight: Callable | str | None = None) -> None:
    sys.exit(job_main(job, sys.argv[1:], run, description, add_arguments, preflight))
