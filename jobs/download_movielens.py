"""python jobs/download_movielens.py [--release NAME] [--dest DIR]: fetch a verified MovieLens zip.

Defaults come from the config (download.release, download.base_url, download.timeout_s, raw_dir).
Needs no Spark: plain Python with the movierec package installed.
"""

import argparse
import logging
import sys

from movierec.core.config import ConfigError, load_config
from movierec.data.download import KNOWN_RELEASES, DownloadError, download_release

log = logging.getLogger("movierec.job")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python jobs/download_movielens.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--release",
                   help=f"one of {', '.join(KNOWN_RELEASES)} (config: download.release)")
    p.add_argument("--dest",
                   help="folder for <release>.zip, relative to the project root (config: raw_dir)")
    p.add_argument("--profile", default="local", help="conf/<profile>.yaml over conf/base.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set download.timeout_s=60 (repeatable)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, datefmt="%H:%M:%S",
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.profile, args.overrides)
        # Flags applied as values, not parsed as YAML, so any path text is taken literally.
        flags = {"download.release": args.release, "raw_dir": args.dest}
        cfg = cfg.with_overrides({k: v for k, v in flags.items() if v is not None})
    except ConfigError as e:
        log.error("%s", e)
        return 2
    try:
        path = download_release(cfg["download.release"], cfg.path("raw_dir"),
                                cfg["download.base_url"], float(cfg["download.timeout_s"]))
    except DownloadError as e:
        log.error("download failed: %s", e)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
