"""Baselines the benchmarks measure in the same run as the code they judge:

- bare_sgemm: the pure GEMM inside a top-K for all users (float32 user blocks times the item
  factors, nothing kept), in a fresh process with OpenBLAS on `threads` threads;
- plain_csv_load: each CSV file of a release read with a typed schema and written to Delta,
  with no validation, line numbers or quarantine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# The typed schema of each release file, as a plain load would declare it.
CSV_SCHEMAS = {
    "ratings.csv": "userId int, movieId int, rating float, timestamp long",
    "movies.csv": "movieId int, title string, genres string",
    "tags.csv": "userId int, movieId int, tag string, timestamp long",
    "links.csv": "movieId int, imdbId string, tmdbId int",
}

_SGEMM = """
import json, sys, time
import numpy as np
users, items, rank, block = map(int, sys.argv[1:5])
rng = np.random.default_rng(0)
u = rng.standard_normal((block, rank), dtype=np.float32)
v = rng.standard_normal((rank, items), dtype=np.float32)
out = np.empty((block, items), dtype=np.float32)
np.matmul(u, v, out=out)   # warm-up: thread pool and pages
started = time.perf_counter()
for start in range(0, users, block):
    n = min(block, users - start)
    np.matmul(u[:n], v, out=out[:n])
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def bare_sgemm(users: int, items: int, rank: int, block: int = 4096, threads: int = 2) -> float:
    """Seconds for the float32 GEMM of `users` x `rank` against `rank` x `items`, in blocks of
    `block` users (the top-K's own block), on `threads` OpenBLAS threads."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-c", _SGEMM, str(users), str(items), str(rank), str(block)],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)["seconds"]


def plain_csv_load(spark, release: Path, dest: Path) -> int:
    """Every CSV_SCHEMAS file present in `release`, CSV -> Delta; returns the rows written."""
    targets = []
    for name, schema in CSV_SCHEMAS.items():
        if (release / name).is_file():
            targets.append(str(dest / name.removesuffix(".csv")))
            (spark.read.csv(str(release / name), header=True, schema=schema)
             .write.format("delta").mode("overwrite").save(targets[-1]))
    return sum(spark.read.format("delta").load(target).count() for target in targets)
