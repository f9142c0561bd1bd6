#!/usr/bin/env python
"""Merge memory: extra memory of `lamina.merge` on a bert-base config (random weights, 110M params) with
LoRA r=8 on every projection (85M merged parameters), in both modes, measured side by side:

- retained: bytes the merge keeps after it returns (copies of the originals in exact mode; fingerprints
  and rescaling factors in lean mode), counted from the merge records;
- peak: the process's peak resident memory during the merge minus its resident memory just before (each
  mode in a fresh process, so one mode's peak cannot hide the other's), which also catches temporaries.

    .venv/bin/python bench/bench_merge_memory.py --markdown docs/benchmarks/merge_memory.md

Goal (issue 15): lean-mode extra memory <= 5 % of the merged tensors' size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

from report_file import publish

DESIGN = "lora:r=8,targets=q+k+v+o+ffn_in+ffn_out"


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def one(exact: bool) -> dict:
    import torch
    import transformers as T

    import lamina
    from lamina.inject import adapters_of
    from lamina.merging import merge_parts

    torch.set_num_threads(1)
    model = T.BertForSequenceClassification(T.BertConfig()).eval()
    lamina.apply(model, DESIGN)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01)
    adapters = adapters_of(model)["default"]
    merged_bytes = sum(m.weight.numel() * m.weight.element_size() for name, m in model.named_modules()
                       if isinstance(m, torch.nn.Linear) and ".encoder.layer." in name)
    before = rss_bytes()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    merge_parts(adapters, exact=exact)
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, peak_before)
    folds = adapters.groups["0"]["lora"].__dict__["_folds"]
    retained = sum((f.original.numel() * f.original.element_size() if f.original is not None else 0)
                   + (f.factor.numel() * f.factor.element_size() if f.factor is not None else 0) + 16 for f in folds.values())
    return {"exact": exact, "merged_bytes": merged_bytes, "retained_bytes": retained,
            "peak_extra_bytes": max(0, peak - max(before, peak_before)), "rss_after_extra_bytes": rss_bytes() - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--_one", choices=["exact", "lean"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._one:
        print(json.dumps(one(args._one == "exact")))
        return
    rows = []
    for mode in ("exact", "lean"):
        out = subprocess.run([sys.executable, __file__, "--_one", mode], check=True, capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    mb = 1 / 2**20
    lines = [f"Merge memory, bert-base config, `{DESIGN}` (load {os.getloadavg()[0]:.2f})", "",
             "| mode | merged tensors MB | retained MB | retained / merged | peak extra MB | peak / merged |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {'exact (copies)' if r['exact'] else 'lean (default)'} | {r['merged_bytes'] * mb:.1f} | "
                     f"{r['retained_bytes'] * mb:.2f} | {r['retained_bytes'] / r['merged_bytes']:.2%} | "
                     f"{r['peak_extra_bytes'] * mb:.1f} | {r['peak_extra_bytes'] / r['merged_bytes']:.2%} |")
    lean = rows[1]
    lines += ["", f"Lean-mode peak extra memory {lean['peak_extra_bytes'] / lean['merged_bytes']:.2%} of the merged tensors' "
              f"size (goal <= 5 %): {'met' if lean['peak_extra_bytes'] <= 0.05 * lean['merged_bytes'] else 'NOT met'}."]
    text = "\n".join(lines) + "\n"
    publish(text, "Merge memory", args.markdown)


if __name__ == "__main__":
    main()
