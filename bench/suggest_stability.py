#!/usr/bin/env python
"""How stable is a suggestion? The chosen (layer, method) cells for several probe lengths and seeds,
per signal, on MiniLM (probe only, no training). A signal whose design changes with the seed is
measuring noise at that probe length.

    .venv/bin/python bench/suggest_stability.py --task sst2 --signals fisher adam --steps 4 8 16 32

Data: the training part of bench/suggest_check.py's holdout folder (made on first use).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from suggest_check import ROOT, data_folder


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--signals", nargs="+", default=["fisher", "adam"])
    parser.add_argument("--steps", nargs="+", type=int, default=[4, 8, 16, 32])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget", default="0.5%")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "suggest" / "stability.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    from lamina.evaluate import default_model, encode, load_model, load_split, resolve_task
    from lamina.suggest import probe_batches, suggest_from_batches
    from lamina.util import atomic_write_text

    spec, path = resolve_task(args.task, data_folder(args.task, "holdout", ROOT / "runs" / "suggest_check"))
    examples, _ = load_split(spec, path, "train")
    model, tokenizer = load_model(default_model(), spec)
    features = encode(spec, examples, tokenizer, args.max_length, 128, True)
    rows = json.loads(args.json.read_text()) if args.json.is_file() else []
    for signal in args.signals:
        for steps in args.steps:
            for seed in args.seeds:
                started = time.perf_counter()
                s = suggest_from_batches(model, probe_batches(features, tokenizer, steps, args.batch_size, seed),
                                         args.budget, seed=seed, signal=signal)
                chosen = sorted([layer, method] for layer, method in s.allocation.chosen)
                rows = [r for r in rows if (r["task"], r["signal"], r["steps"], r["seed"]) != (args.task, signal, steps, seed)]
                rows.append({"task": args.task, "signal": signal, "steps": steps, "seed": seed, "chosen": chosen,
                             "budget": args.budget, "seconds": round(time.perf_counter() - started, 1)})
                sized = [c for c in chosen if c[1] in s.probe.sizes]
                print(f"{args.task} {signal} {steps:>3} batches seed {seed}: {len(chosen)} cells, sized {sized}", flush=True)
                atomic_write_text(args.json, json.dumps(agreement(rows), indent=1) + "\n")


def agreement(rows: list[dict]) -> list[dict]:
    """Each row's Jaccard overlap of chosen cells with the longest probe of the first seed (same task, signal)."""
    for r in rows:
        same = [x for x in rows if (x["task"], x["signal"]) == (r["task"], r["signal"])]
        ref = max(same, key=lambda x: (x["steps"], -x["seed"]))
        got, want = {tuple(c) for c in r["chosen"]}, {tuple(c) for c in ref["chosen"]}
        r["jaccard_vs_longest_seed0"] = round(len(got & want) / len(got | want), 3)
    return rows


if __name__ == "__main__":
    main()
