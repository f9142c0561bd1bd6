#!/usr/bin/env python
"""Quick check of `lamina suggest` against uniform LoRA at the same budget, on MiniLM and real GLUE data.

Two phases, so that no choice is tuned on the reported dev set:

* `--phase holdout`: train on part of the training data and score on a held-out slice of *training*
  data (SST-2, STS-B: 1,600 / 400 of a fixed random 2,000 rows; RTE: 2,000 / 490 of its 2,490 rows). The
  variants of the suggestion (signal, candidate methods) are compared here.
* `--phase dev`: train on the whole subset (SST-2, STS-B: the 2,000 rows; RTE: all 2,490) and score on
  the original dev set, for LoRA and the variant the holdout phase picked.

Each run is `lamina.train.train` in its own process with 1 torch thread; `auto:` designs run their probe
inside it (at most 2 % of the run's steps; its cost is in results.json "suggest"). Rows are appended to
`--json` as they finish; rows already there are skipped, so the script resumes.

    .venv/bin/python bench/suggest_check.py --phase holdout --designs lora:budget=0.5% auto:budget=0.5%
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "glue"
FOLDERS = {"sst2": "SST-2", "stsb": "STS-B", "rte": "RTE"}
SUBSET = {"sst2": 2000, "stsb": 2000, "rte": None}  # rows drawn (seed 0) from train.tsv; None = all
HOLDOUT = {"sst2": 400, "stsb": 400, "rte": 490}  # rows of the subset held out in the holdout phase
TRAIN = dict(epochs=3, batch_size=16, max_length=128, lr=1e-3, seed=0)


def _lines(path: Path) -> tuple[str, list[str]]:
    lines = [l.rstrip("\r\n") for l in path.read_text(encoding="utf-8-sig").splitlines() if l.strip()]
    return lines[0], lines[1:]


def data_folder(task: str, phase: str, work: Path) -> Path:
    """A GLUE-layout folder for the phase: holdout = subset minus the held-out rows / those rows as dev;
    dev = the whole subset / the original dev.tsv."""
    folder = work / "data" / f"{task}-{phase}"
    target = folder / FOLDERS[task]
    if (target / "dev.tsv").is_file():
        return folder
    header, rows = _lines(DATA / FOLDERS[task] / "train.tsv")
    order = list(range(len(rows)))
    random.Random(0).shuffle(order)
    subset = [rows[i] for i in order[: SUBSET[task] or len(rows)]]
    if phase == "holdout":
        train_rows, dev_header, dev_rows = subset[HOLDOUT[task]:], header, subset[: HOLDOUT[task]]
    else:
        train_rows = subset
        dev_header, dev_rows = _lines(DATA / FOLDERS[task] / "dev.tsv")
    target.mkdir(parents=True, exist_ok=True)
    (target / "train.tsv").write_text(header + "\n" + "\n".join(train_rows) + "\n", encoding="utf-8")
    (target / "dev.tsv").write_text(dev_header + "\n" + "\n".join(dev_rows) + "\n", encoding="utf-8")
    return folder


def run_one(task: str, design: str, phase: str, work: Path) -> dict:
    """One training run in a fresh 1-thread process; returns the row for the JSON."""
    from lamina.evaluate import default_model

    out = work / "runs" / phase / f"{task}-{design.replace(':', '_').replace(',', '_').replace('%', 'pct')}"
    code = (
        "import json, sys, torch; torch.set_num_threads(1)\n"
        "from lamina.train import train\n"
        f"r = train({default_model()!r}, {task!r}, {design!r}, {str(data_folder(task, phase, work))!r}, {str(out)!r}, "
        f"epochs={TRAIN['epochs']}, batch_size={TRAIN['batch_size']}, max_length={TRAIN['max_length']}, "
        f"lr={TRAIN['lr']}, seed={TRAIN['seed']}, eval_steps=10**9, progress=False)\n"
        "print('RESULT ' + json.dumps(r, default=str))\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error",
               OMP_WAIT_POLICY="PASSIVE")
    started = time.time()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        raise SystemExit(f"{task} {design} failed:\n{proc.stderr[-3000:]}")
    r = json.loads(line[7:])
    return {"task": task, "design": design, "phase": phase, "score": r["main_score"], "metric": r["main_metric"],
            "trainable_without_head": sum(x["trainable"] for x in r["params_report"]["rows"] if x["method"] != "head"),
            "steps": r["global_step"], "train_time_s": r["train_time_s"], "wall_s": round(time.time() - started, 1),
            "suggest": r.get("suggest"), "groups": r["design"]["groups"], "options": TRAIN}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", choices=("holdout", "dev"), required=True)
    parser.add_argument("--tasks", nargs="+", default=["sst2", "stsb"], choices=list(FOLDERS))
    parser.add_argument("--designs", nargs="+", required=True)
    parser.add_argument("--work-dir", type=Path, default=ROOT / "runs" / "suggest_check")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "suggest" / "check.json")
    args = parser.parse_args(argv)
    rows = json.loads(args.json.read_text()) if args.json.is_file() else []
    for task in args.tasks:
        for design in args.designs:
            if any(r["task"] == task and r["design"] == design and r["phase"] == args.phase for r in rows):
                continue
            row = run_one(task, design, args.phase, args.work_dir)
            rows.append(row)
            from lamina.util import atomic_write_text

            atomic_write_text(args.json, json.dumps(rows, indent=1) + "\n")
            probe = row["suggest"] or {}
            print(f"{args.phase} {task} {design}: {row['metric']} {100 * row['score']:.2f}, "
                  f"{row['trainable_without_head']:,} params, {row['steps']} steps, {row['train_time_s']:.0f} s"
                  + (f", probe {probe.get('steps')} batches {probe.get('wall_s', 0):.1f} s" if probe else ""), flush=True)


if __name__ == "__main__":
    main()
