#!/usr/bin/env python
"""Reference for bench/bench_cost.py: AdapterHub `adapters` UniPELT on the same model config, batch and
loop, run in that library's own environment (it pins its own transformers). Prints one JSON line: the
median train step and inference latency, and what was installed.

    /work/adapters-venv/bin/python bench/bench_cost_adapters.py --model bert-base --threads 2

bench_cost.py runs it itself with `--adapters-python /work/adapters-venv/bin/python`. The environment:

    python3 -m venv /work/adapters-venv
    /work/adapters-venv/bin/pip install torch==2.13.0      # the same torch as lamina's environment
    /work/adapters-venv/bin/pip install adapters           # brings the transformers version it supports

The design is the library's `UniPELTConfig()` (gated LoRA r=8 on query/value, gated prefix of 10 with a
512-wide MLP, gated sequential bottleneck adapter with reduction factor 16: 48 at 768), as lamina's
`unipelt` preset; the pooler and classifier train too, as lamina's task head does. Same loop as
bench_cost.py: forward with labels, backward, AdamW step, zero_grad(set_to_none); garbage collector off
while timing. Not interleaved with lamina's configurations (another process), so its ratios to lamina's
figures are only as good as the machine is quiet.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cost import MODELS, build_base, make_batch, make_optimizer, quiet_gc, timed, train_step  # noqa: E402


def unipelt(model):
    import adapters

    adapters.init(model)
    model.add_adapter("unipelt", config=adapters.UniPELTConfig())
    model.train_adapter("unipelt")
    for name, p in model.named_parameters():  # the task head trains, as lamina's does
        if name.startswith(("classifier.", "bert.pooler.")):
            p.requires_grad_(True)
    return model


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=MODELS, default="bert-base")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=3, help="timed train steps")
    p.add_argument("--latency-iters", type=int, default=3, help="timed forwards")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import adapters
    import transformers

    model = unipelt(build_base(args.model, args.seed))
    batch = make_batch(model, args.batch, args.length, args.seed + 1)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params)
    model.train()
    with quiet_gc():
        for _ in range(max(1, args.warmup)):
            timed(lambda: train_step(model, optimizer, batch))
        steps = [timed(lambda: train_step(model, optimizer, batch)) for _ in range(args.steps)]
    model.eval()
    with quiet_gc(), torch.no_grad():
        timed(lambda: model(**inputs))
        latency = [timed(lambda: model(**inputs)) for _ in range(args.latency_iters)]
    out = {
        "library": "adapters", "adapters": adapters.__version__, "transformers": transformers.__version__,
        "torch": torch.__version__, "design": "adapters.UniPELTConfig() + pooler and classifier trained",
        "trainable": sum(p.numel() for p in params), "threads": torch.get_num_threads(),
        "step_s": statistics.median(s[0] for s in steps), "step_cpu_s": statistics.median(s[1] for s in steps),
        "steps_s": [s[0] for s in steps],
        "latency_s": statistics.median(t[0] for t in latency), "latencies_s": [t[0] for t in latency],
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
