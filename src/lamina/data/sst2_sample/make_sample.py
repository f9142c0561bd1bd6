"""Rebuild this SST-2 sample from the full GLUE SST-2 files.

    python make_sample.py [--src DIR_WITH_SST-2_train.tsv_AND_dev.tsv]

train.tsv: the header plus 2,000 data lines of the full train.tsv (67,349 rows), chosen with
``random.Random(0).sample(range(67349), 2000)`` and written in their original file order, byte for
byte. dev.tsv: a copy of the official dev.tsv (872 rows). Prints the label balance.
"""

from __future__ import annotations

import argparse
import random
import shutil
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SRC = HERE.parents[3].parent / "shared" / "data" / "glue" / "SST-2"  # <repo>/../shared/data
N_TRAIN, SEED = 2000, 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()

    with open(args.src / "train.tsv", encoding="utf-8", newline="") as f:
        header, *rows = f.readlines()
    assert header.startswith("sentence\tlabel"), header
    picked = sorted(random.Random(SEED).sample(range(len(rows)), N_TRAIN))
    with open(args.out / "train.tsv", "w", encoding="utf-8", newline="") as f:
        f.write(header)
        f.writelines(rows[i] for i in picked)
    shutil.copyfile(args.src / "dev.tsv", args.out / "dev.tsv")

    for name in ("train.tsv", "dev.tsv"):
        with open(args.out / name, encoding="utf-8") as f:
            labels = Counter(line.rstrip("\n").split("\t")[-1] for line in list(f)[1:])
        print(f"{name}: {sum(labels.values())} rows, label 0 (negative): {labels['0']}, "
              f"label 1 (positive): {labels['1']}")


if __name__ == "__main__":
    main()
