"""Throughput of MiniLM on this machine, measured before sizing the budget benchmark (bench_budget.py
--throughput): training examples/s (forward + backward + AdamW step, real rows of each task, dynamic
padding, the benchmark's batch size and max lengths) and evaluation examples/s (no grad, batches of
similar length, as lamina.train's evaluation), for full fine-tuning and a 0.5 % LoRA, at 1 and 2 torch
threads. Each (threads) setting runs in its own process so the thread count is clean."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path


def measure(model_path: str, data_dir: str, tasks: dict[str, int], designs: list[str], threads: int,
            batch_size: int, eval_batch_size: int, seconds: float) -> list[dict]:
    import torch
    import transformers as T

    torch.set_num_threads(threads)
    T.logging.set_verbosity_error()
    import lamina
    from lamina.evaluate import by_length, encode, load_model, load_split, resolve_task

    out = []
    for task, max_length in tasks.items():
        spec, path = resolve_task(task, data_dir)
        train_ex = load_split(spec, path, "train")[0]
        dev_ex = load_split(spec, path, "validation")[0]
        for design in designs:
            torch.manual_seed(0)
            model, tok = load_model(model_path, spec)
            lamina.apply(model, design)
            collate = T.DataCollatorWithPadding(tok)
            rows = random.Random(0).sample(train_ex, min(len(train_ex), 4000))
            feats = encode(spec, rows, tok, max_length, 128, train=True)
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
            model.train()
            n, t0, i = 0, None, 0
            while True:
                batch = collate(feats[i * batch_size:(i + 1) * batch_size])
                i += 1
                loss = model(**batch).loss
                loss.backward()
                opt.step()
                opt.zero_grad()
                if t0 is None:  # first step is warm-up
                    t0 = time.perf_counter()
                    continue
                n += batch["input_ids"].shape[0]
                if time.perf_counter() - t0 > seconds or (i + 1) * batch_size > len(feats):
                    break
            train_rate = n / (time.perf_counter() - t0)
            model.eval()
            dev = encode(spec, dev_ex, tok, max_length, 128, train=False)
            dev = [dev[j] for j in by_length(dev)]
            dev = [dev[j] for j in sorted(random.Random(1).sample(range(len(dev)), min(len(dev), 512)))]
            with torch.no_grad():
                t0 = time.perf_counter()
                for j in range(0, len(dev), eval_batch_size):
                    model(**{k: v for k, v in collate(dev[j:j + eval_batch_size]).items() if k != "labels"})
                eval_rate = len(dev) / (time.perf_counter() - t0)
            out.append(dict(task=task, design=design, threads=threads, max_length=max_length, batch_size=batch_size,
                            train_examples_per_s=round(train_rate, 1), train_measured_examples=n,
                            eval_examples_per_s=round(eval_rate, 1), eval_batch_size=eval_batch_size,
                            loadavg=" ".join(f"{x:.2f}" for x in os.getloadavg())))
            print(json.dumps(out[-1]), flush=True)
    return out


def run(model_path: str, data_dir: str, tasks: dict[str, int], designs: list[str], thread_counts: list[int],
        batch_size: int, eval_batch_size: int, seconds: float, out_path: Path) -> list[dict]:
    """Each thread count in a fresh process; results appended to `out_path` (JSON) when all are done."""
    results = []
    for threads in thread_counts:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        spec = json.dumps(dict(model_path=model_path, data_dir=str(data_dir), tasks=tasks, designs=designs,
                               threads=threads, batch_size=batch_size, eval_batch_size=eval_batch_size,
                               seconds=seconds))
        proc = subprocess.run([sys.executable, __file__, spec], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"throughput run failed:\n{proc.stderr[-3000:]}")
        results += [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    from lamina.util import atomic_write_text

    atomic_write_text(out_path, json.dumps({"measured": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": results}, indent=2) + "\n")
    return results


def table(results: list[dict]) -> str:
    lines = ["| task | max len | design | threads | train ex/s | eval ex/s | load avg (1 min) |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['task']} | {r['max_length']} | `{r['design']}` | {r['threads']} | "
                     f"{r['train_examples_per_s']:.1f} | {r['eval_examples_per_s']:.1f} | {r['loadavg'].split()[0]} |")
    return "\n".join(lines)


if __name__ == "__main__":
    measure(**json.loads(sys.argv[1]))
