"""Logging set up once per job, and a stage timer so long jobs show progress."""

from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from typing import Iterator


def configure_logging(job: str, run_date: str | None = None, level: int = logging.INFO) -> None:
    tag = f"{job} {run_date}" if run_date else job
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)s [{tag}] %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)


class Stage:
    def __init__(self, name: str):
        self.name, self.rows, self.started = name, None, time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


@contextmanager
def stage(log: logging.Logger, name: str) -> Iterator[Stage]:
    """Logs the start and end of a stage with its elapsed time and, if set, its row count."""
    st = Stage(name)
    log.info("stage %s: started", name)
    yield st
    rows = f", {st.rows:,} rows" if st.rows is not None else ""
    log.info("stage %s: done in %.1fs%s", name, st.elapsed, rows)
