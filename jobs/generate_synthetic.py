"""python jobs/generate_synthetic.py --out DIR [--scale small|medium|ml-25m|N] [--seed 42]:
a synthetic MovieLens release in the ml-25m CSV layout (no Spark needed)."""

import argparse
import json
import logging
from pathlib import Path

from movierec.data.synthetic import SCALES, generate


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="folder to write the CSV files into")
    parser.add_argument("--scale", default="small",
                        help=f"one of {', '.join(SCALES)}, or a number of ratings (default: small)")
    parser.add_argument("--seed", type=int, default=42, help="same seed and scale give identical files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    try:
        summary = generate(args.out, args.scale, args.seed)
    except ValueError as e:  # a scale that does not exist or cannot be satisfied
        parser.error(str(e))
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
