"""A bar chart of bench/pipeline.py's stage times, from its results (or their JSON file).

    .venv/bin/python bench/chart.py work/bench-pipeline/pipeline_results.json docs/benchmark_stages.png

bench/pipeline.py --chart PATH calls stage_chart() itself at the end of a run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {"setup": "#9e9e9e", "full": "#1f77b4", "refit": "#ff7f0e"}
GROUP_NAMES = {"setup": "not in the nightly totals", "full": "nightly, full CV retrain",
               "refit": "nightly refit"}


def stage_chart(results: dict, path: Path) -> None:
    """Horizontal bars, one per stage in run order, coloured by the total it counts in."""
    stages, meta = results["stages"], results["meta"]
    fig, ax = plt.subplots(figsize=(10, 0.42 * len(stages) + 2.0))
    y = range(len(stages))
    ax.barh(y, [s["seconds"] for s in stages], color=[COLOURS.get(s["group"], "#555") for s in stages])
    for i, s in enumerate(stages):
        ax.text(s["seconds"], i, f" {s['seconds']:,.1f} s", va="center", fontsize=8)
    ax.set_yticks(list(y), [s["label"] for s in stages], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("wall seconds")
    ax.margins(x=0.15)
    totals = "\n".join(f"{name}: {seconds:,.0f} s" for name, seconds in results["totals"].items())
    ax.set_title(f"movierec nightly pipeline, synthetic {meta['scale']} ({meta['ratings']:,} ratings), "
                 f"profile {meta['profile']}, {meta['cores']} cores\n{totals}", fontsize=9)
    used = [g for g in COLOURS if any(s["group"] == g for s in stages)]
    ax.legend([plt.Rectangle((0, 0), 1, 1, color=COLOURS[g]) for g in used],
              [GROUP_NAMES[g] for g in used], fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    stage_chart(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2]))
