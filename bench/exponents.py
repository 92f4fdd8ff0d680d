"""How each stage's time grows with the ratings: bench/pipeline.py's results at several scales
side by side, with the fitted exponent b of seconds ~ a * ratings^b per stage (least squares on
log-log; b <= 1.1 is what issue 14 asks for).

    .venv/bin/python bench/exponents.py /work/b1/pipeline_results.json /work/b5/pipeline_results.json \
        /work/bp/pipeline_results.json

Each file is one `bench/pipeline.py --mode nights --scale N` run; stages are matched by label.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def exponent(ratings: list[int], seconds: list[float]) -> float:
    """The slope of log(seconds) against log(ratings)."""
    return float(np.polyfit(np.log(ratings), np.log(seconds), 1)[0])


def table(runs: list[dict]) -> list[str]:
    runs = sorted(runs, key=lambda r: r["meta"]["ratings"])
    sizes = [r["meta"]["ratings"] for r in runs]
    head = " | ".join(f"{round(n / 1e6, 1):g}M s" for n in sizes)
    lines = [f"| stage | {head} | exponent |", "|---|" + "---:|" * (len(sizes) + 1)]
    rows = [{s["label"]: s["seconds"] for s in r["stages"]} | {f"**total: {k}**": v for k, v in r["totals"].items()}
            for r in runs]
    for label in rows[-1]:
        times = [row.get(label) for row in rows]
        if any(v is None or v <= 0 for v in times):
            continue
        cells = " | ".join(f"{v:.1f}" for v in times)
        lines.append(f"| {label} | {cells} | {exponent(sizes, times):.2f} |")
    return lines


def main(paths: list[str]) -> None:
    if len(paths) < 2:
        raise SystemExit("give two or more pipeline_results.json files of different scales")
    print("\n".join(table([json.loads(Path(p).read_text()) for p in paths])))


if __name__ == "__main__":
    main(sys.argv[1:])
