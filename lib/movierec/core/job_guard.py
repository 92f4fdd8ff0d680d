"""One job at a time on a lake, and no job reading tables another job left half-written.

Each Delta commit is atomic; a job's set of tables is not (ingest writes movies, ratings, tags,
... one commit each; split writes train, test, buffer and split_info). So, before its first
write, a job leaves a marker, `<lake>/_unfinished/<job>.json`, naming the tables it writes
(`tables.JOB_TABLES`), and removes it after it finished. A marker that outlives its job (killed,
or failed between two writes) makes every read of those tables through `delta_io.read` refuse,
naming the job to rerun. The rerun takes the marker over and removes it when it is done; each
job records its run last (ingestion_runs, split_info, landing_files), so a dead run left no
record that would make its rerun skip the work as done.

Why readers refuse instead of reading the versions of the last finished job (a commit log
resolved by time travel): it costs one directory listing per read instead of a Spark action,
Airflow retries the failed task anyway, and no job silently runs on yesterday's data.

Jobs on one lake run one at a time: each holds an exclusive `flock` on `<lake>/_lake.lock`, which
the kernel releases however the process dies; the next job waits up to `lake_lock_timeout_s`,
then fails naming the holder. Jobs called by another job in the same process (pipeline ->
ingest) share its lock.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import json
import logging
import os
import signal
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from movierec.core import tables
from movierec.core.errors import UserError

log = logging.getLogger(__name__)

MARKERS = "_unfinished"
LOCK = "_lake.lock"
# Test-only fault points: "kill:<point>" SIGKILLs the process group, "raise:<point>" raises
# SimulatedCrash, where the job reaches <point>: a table's name as the job begins to write it
# (its earlier tables are committed, this one is not, as when a job dies during a write), or
# another point named by a fault_point() call.
FAULT_ENV = "MOVIEREC_FAULT"


class UnfinishedJobError(UserError, RuntimeError):
    pass


class LakeBusyError(UserError, RuntimeError):
    pass


class SimulatedCrash(BaseException):
    """A death at a fault point: like a kill, it skips every `except Exception` on the way out."""


@dataclass
class _Held:
    fd: int
    depth: int = 0


@dataclass
class _Job:
    name: str
    lake: Path
    written: list[str] = field(default_factory=list)
    started: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


_locks: dict[Path, _Held] = {}
_active: list[_Job] = []


def marker_path(lake: Path | str, job: str) -> Path:
    return Path(lake) / MARKERS / f"{job}.json"


def markers(lake: Path | str) -> list[dict]:
    folder = Path(lake) / MARKERS
    if not folder.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def unfinished(lake: Path | str, job: str) -> dict | None:
    """The marker of `job`'s last run if it did not finish."""
    path = marker_path(lake, job)
    return json.loads(path.read_text()) if path.is_file() else None


def check_readable(lake: Path | str, name: str) -> None:
    """Refuses a table that a job which is not running here left unfinished."""
    mine = {j.name for j in _active if j.lake == Path(lake).resolve()}
    for marker in markers(lake):
        if name in marker["tables"] and marker["job"] not in mine:
            raise UnfinishedJobError(
                f"table {name!r} at {lake} may be half-written: `{marker['job']}` (pid {marker['pid']} "
                f"on {marker['host']}, started {marker['started']}) has not finished; it began writing "
                f"{', '.join(marker['written'])}. It is running now or was "
                f"interrupted: wait for it, or run `{marker['job']}` again")


def before_write(lake: Path | str, name: str) -> None:
    """Called by delta_io before every write: leaves (or updates) the running job's marker."""
    job = next((j for j in reversed(_active) if j.lake == Path(lake).resolve()), None)
    if job is None:   # a write outside any job (a test, a notebook): one table, one commit
        return
    if name not in tables.JOB_TABLES[job.name]:
        raise RuntimeError(f"`{job.name}` writes {name!r}, which tables.JOB_TABLES does not list for it")
    if name not in job.written:
        job.written.append(name)
        _write_marker(job)
    fault_point(name)


def fault_point(name: str) -> None:
    """Dies here if FAULT_ENV names this point (tests only; a no-op otherwise)."""
    action, _, point = os.environ.get(FAULT_ENV, "").partition(":")
    if point != name:
        return
    log.warning("fault point %s: %s", name, action)
    if action == "kill":
        os.killpg(os.getpgrp(), signal.SIGKILL)
    raise SimulatedCrash(f"{FAULT_ENV}={action}:{point}")


def _write_marker(job: _Job) -> None:
    path = marker_path(job.lake, job.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"job": job.name, "pid": os.getpid(), "host": socket.gethostname(), "started": job.started,
            "tables": list(tables.JOB_TABLES[job.name]), "written": job.written}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(body))
    os.replace(tmp, path)   # whole or not at all


@contextmanager
def holding(lake: Path, job: str, timeout_s: float) -> Iterator[None]:
    """The lake's lock, for `job`; reentrant within a process."""
    held = _locks.get(lake)
    if held is None:
        held = _locks[lake] = _Held(_acquire(lake, job, timeout_s))
    held.depth += 1
    try:
        yield
    finally:
        held.depth -= 1
        if held.depth == 0:
            del _locks[lake]
            os.close(held.fd)   # releases the flock


def _acquire(lake: Path, job: str, timeout_s: float) -> int:
    lake.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(lake / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise UserError(f"cannot open the lake's lock {lake / LOCK}: {e.strerror}") from e
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another job"
            if time.monotonic() >= deadline:
                os.close(fd)
                raise LakeBusyError(f"the lake {lake} is held by {holder}: gave up after "
                                    f"{timeout_s:g} s (lake_lock_timeout_s)") from None
            log.info("waiting for the lake, held by %s", holder)
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
    os.ftruncate(fd, 0)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    os.pwrite(fd, f"{job} (pid {os.getpid()} on {socket.gethostname()}, since {stamp})".encode(), 0)
    return fd


def job(name: str) -> Callable:
    """Decorates a job's run(spark, cfg, run_date): the lake's lock for its duration, its marker
    from its first write until it returns."""
    def wrap(run: Callable) -> Callable:
        @functools.wraps(run)
        def guarded(spark, cfg, run_date: str | None = None, *args, **kwargs):
            lake = cfg.path("lake")
            with holding(lake, name, cfg["lake_lock_timeout_s"]):
                interrupted = unfinished(lake, name)
                if interrupted:
                    log.warning("redoing `%s` of %s (pid %s), which did not finish writing %s",
                                name, interrupted["started"], interrupted["pid"], interrupted["written"])
                this = _Job(name, lake)
                _active.append(this)
                try:
                    result = run(spark, cfg, run_date, *args, **kwargs)
                finally:
                    _active.remove(this)
                marker_path(lake, name).unlink(missing_ok=True)
                return result
        return guarded
    return wrap


def storage_failure(error: BaseException) -> str | None:
    """One line for a failure of the disk under the lake, found in a Java or Python error."""
    text = str(error)
    for code, what in ((errno.ENOSPC, "the disk under the lake is full"),
                       (errno.EROFS, "the lake is on a read-only file system")):
        if os.strerror(code) in text:
            line = next(ln.strip() for ln in text.splitlines() if os.strerror(code) in ln)
            return f"{what} ({line[:200]})"
    return None
