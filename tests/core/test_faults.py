"""Rows of the fault table (docs/reliability.md) that need no MovieLens data: two jobs on one
lake, a full disk and a read-only lake under it, readers of a served table during its writes.
(Jobs that die between two writes: tests/data/test_ingest.py, test_split.py, test_landing.py.)"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import date, datetime, timezone

import pytest
from deltalake import DeltaTable as RustDeltaTable

from movierec.core import delta_io, job_guard, tables as t
from movierec.core.errors import UserError
from movierec.data import split

HOLD = """
import sys, time
from pathlib import Path
from movierec.core import job_guard
with job_guard.holding(Path(sys.argv[1]), "recommend", 5):
    print("held", flush=True)
    time.sleep(120)
"""


def _ratings(spark, n: int):
    rows = [(u, 1, 4.0, datetime.fromtimestamp(1_000_000_000 + u, timezone.utc)) for u in range(1, n + 1)]
    return spark.createDataFrame(rows, t.SCHEMAS[t.RATINGS])


def test_jobs_on_one_lake_run_one_at_a_time(spark, make_cfg, lake):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(lake)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        with pytest.raises(job_guard.LakeBusyError,
                           match=r"held by recommend \(pid \d+ on .*\): gave up after 0.5 s"):
            split.run(spark, make_cfg(lake_lock_timeout_s=0.5))
        assert time.monotonic() - started >= 0.5
    finally:
        holder.kill()   # SIGKILL: the kernel releases its lock
        holder.wait()
    with pytest.raises(delta_io.MissingTableError, match="run `ingest` first"):   # past the lock
        split.run(spark, make_cfg(lake_lock_timeout_s=5))


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs of its own (root may mount one; elsewhere the test is skipped)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): the full-disk and "
                    "read-only lake need one")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_full_disk_fails_the_write_in_one_line_and_changes_nothing(spark, small_disk):
    lake = small_disk / "lake"
    delta_io.overwrite(_ratings(spark, 2), lake, t.RATINGS)
    before = delta_io.version(spark, lake, t.RATINGS)
    with open(small_disk / "filler", "wb") as filler:   # what else was written there tonight
        with pytest.raises(OSError):
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
    with pytest.raises(Exception) as failed:
        delta_io.overwrite(_ratings(spark, 1_000), lake, t.RATINGS)
    assert job_guard.storage_failure(failed.value).startswith(
        "the disk under the lake is full (") , str(failed.value)[:2000]
    assert delta_io.version(spark, lake, t.RATINGS) == before
    assert delta_io.read(spark, lake, t.RATINGS).count() == 2


def test_a_read_only_lake_fails_a_job_at_once_and_stays_readable(spark, make_cfg, small_disk):
    lake = small_disk / "lake"
    delta_io.overwrite(_ratings(spark, 2), lake, t.RATINGS)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    with pytest.raises(UserError, match=r"cannot open the lake's lock .*: Read-only file system"):
        split.run(spark, make_cfg(lake=lake))
    assert delta_io.read(spark, lake, t.RATINGS).count() == 2


def test_readers_of_a_served_table_see_one_whole_night_during_its_overwrites(spark, lake):
    """recommendations_latest overwritten by three nights of different sizes while another
    process's kind of reader (delta-rs, as an app would) reads it as fast as it can."""
    nights = {date(2026, 11, 21): 300, date(2026, 11, 22): 700, date(2026, 11, 23): 100}

    def night(day, users):
        rows = [(day, u, r, 10 * u + r, 1.0 / r, "model", "als", "1") for u in range(users) for r in (1, 2)]
        return spark.createDataFrame(rows, t.SCHEMAS[t.RECOMMENDATIONS_LATEST])

    first, *others = nights.items()
    delta_io.overwrite(night(*first), lake, t.RECOMMENDATIONS_LATEST)
    seen, done = [], threading.Event()

    def read_until_done():
        while not done.is_set() or len(seen) < 20:
            table = RustDeltaTable(str(lake / t.RECOMMENDATIONS_LATEST)).to_pyarrow_table(columns=[t.RUN_DATE])
            dates = table.column(t.RUN_DATE).to_pylist()
            seen.append((frozenset(dates), len(dates)))

    reader = threading.Thread(target=read_until_done)
    reader.start()
    try:
        for day, users in others:
            delta_io.overwrite(night(day, users), lake, t.RECOMMENDATIONS_LATEST)
    finally:
        done.set()
        reader.join()
    whole = {(frozenset([day]), 2 * users) for day, users in nights.items()}
    assert set(seen) <= whole, set(seen) - whole
    assert len(seen) >= 20
    print(f"{len(seen)} reads during 2 overwrites, {len(set(seen))} distinct nights seen, no mixed state")
