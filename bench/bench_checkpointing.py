#!/usr/bin/env python
"""Gradient checkpointing: peak training memory and step time on a bert-base config (random weights),
batch 32 x 128 tokens, with and without `gradient_checkpointing_enable` (non-reentrant, as
`lamina train --gradient-checkpointing` sets it), measured side by side: each (design, mode) runs in a
fresh process (so peaks cannot hide each other), the modes alternate in rounds, and the figures are
medians over rounds.

    .venv/bin/python bench/bench_checkpointing.py --rounds 3 --markdown docs/benchmarks/checkpointing.md

Goal (issue 15): LoRA's peak training memory <= 0.5x without checkpointing, at a step-time cost <= 1.4x.
Memory is the process's peak resident set during the steps minus its resident set after the model and
the adapter are built (the activations and gradients a step adds), and the total peak beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from report_file import publish


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def one(design: str, checkpointing: bool, steps: int, threads: int) -> dict:
    import torch
    import transformers as T

    import lamina

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = T.BertForSequenceClassification(T.BertConfig(num_labels=2)).train()
    lamina.apply(model, design)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(1000, 20000, (32, 128))
    labels = torch.randint(0, 2, (32,))
    before = rss_bytes()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"step_s": statistics.median(times[1:] or times), "peak_bytes": peak, "step_extra_bytes": peak - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--designs", nargs="+", default=["lora", "unipelt"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--_one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._one:
        design, mode = args._one.rsplit("|", 1)
        print(json.dumps(one(design, mode == "on", args.steps, args.threads)))
        return
    results: dict = {}
    for _ in range(args.rounds):
        for design in args.designs:
            for mode in ("off", "on"):
                out = subprocess.run([sys.executable, __file__, "--_one", f"{design}|{mode}", "--steps", str(args.steps),
                                      "--threads", str(args.threads)], check=True, capture_output=True, text=True,
                                     env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
                results.setdefault((design, mode), []).append(json.loads(out.stdout.strip().splitlines()[-1]))
    mb = 1 / 2**20
    lines = [f"Gradient checkpointing, bert-base config, batch 32 x 128, {args.threads} thread(s), median of "
             f"{args.rounds} rounds x {args.steps} steps (load {os.getloadavg()[0]:.2f} at the end)", "",
             "| design | step extra MB off | on | ratio | total peak MB off | on | ratio | step s off | on | ratio |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    verdicts = []
    for design in args.designs:
        med = {mode: {k: statistics.median(r[k] for r in results[(design, mode)]) for k in results[(design, mode)][0]}
               for mode in ("off", "on")}
        extra = med["on"]["step_extra_bytes"] / med["off"]["step_extra_bytes"]
        total = med["on"]["peak_bytes"] / med["off"]["peak_bytes"]
        step = med["on"]["step_s"] / med["off"]["step_s"]
        lines.append(f"| {design} | {med['off']['step_extra_bytes'] * mb:.0f} | {med['on']['step_extra_bytes'] * mb:.0f} | "
                     f"{extra:.2f} | {med['off']['peak_bytes'] * mb:.0f} | {med['on']['peak_bytes'] * mb:.0f} | {total:.2f} | "
                     f"{med['off']['step_s']:.2f} | {med['on']['step_s']:.2f} | {step:.2f} |")
        if design == "lora":
            verdicts.append(f"LoRA: step memory {extra:.2f}x (goal <= 0.5x: {'met' if extra <= 0.5 else 'NOT met'}), total peak "
                            f"{total:.2f}x, step time {step:.2f}x (goal <= 1.4x: {'met' if step <= 1.4 else 'NOT met'}).")
    text = "\n".join(lines + [""] + verdicts) + "\n"
    publish(text, "Gradient checkpointing", args.markdown)


if __name__ == "__main__":
    main()
