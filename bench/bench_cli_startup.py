#!/usr/bin/env python
"""CLI start-up benchmark: process wall time of `lamina --help`, every `lamina CMD --help`, and
`lamina params` on the bundled Llama-70B-shaped config, each the median of --runs fresh processes,
printed beside the time of `python -c "import torch"` and of importing transformers' Llama modelling
code, measured in the same run (absolute times on a shared machine mean little; the ratios and the
differences are the figures).

    .venv/bin/python bench/bench_cli_startup.py --runs 7 --markdown docs/benchmarks/cli_startup.md

Targets (issue 10): every --help under 0.5 s; `lamina params` on the 70B config at most 1.5 s beyond
the import of transformers' modelling code.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from report_file import publish

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "src" / "lamina" / "data" / "configs" / "llama-70b.json"
# what any tool that reads a config pays: the Auto classes' lazy import structure, then Llama's code
AUTO = ("import transformers; c = transformers.AutoConfig.for_model('llama'); "
        "transformers.AutoModelForSequenceClassification._model_mapping[type(c)]")
COMMANDS = ("params", "train", "eval", "predict", "demo", "merge", "export-peft", "import-peft", "search", "report", "suggest")


def wall(argv: list[str], runs: int) -> float:
    """Median wall seconds of `runs` fresh processes (outputs discarded; a failure stops the benchmark)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    python = sys.executable
    lamina = [python, "-m", "lamina.cli"]
    commands = [c for c in COMMANDS if subprocess.run(lamina + [c, "--help"], capture_output=True).returncode == 0]
    rows = [
        ("python -c pass", wall([python, "-c", "pass"], args.runs), None),
        ("python -c 'import torch'", wall([python, "-c", "import torch"], args.runs), None),
        ("import transformers' Llama modelling", wall([python, "-c", "import transformers.models.llama.modeling_llama"], args.runs), None),
        ("... the same through transformers' Auto classes", wall([python, "-c", AUTO], args.runs), None),
        ("lamina --help", wall(lamina + ["--help"], args.runs), 0.5),
    ]
    rows += [(f"lamina {c} --help", wall(lamina + [c, "--help"], args.runs), 0.5) for c in commands]
    rows.append(("lamina params (Llama-70B config, lora)", wall(lamina + ["params", "--model", str(CONFIG), "--design", "lora"], args.runs), None))
    torch_s, llama_s, auto_s = rows[1][1], rows[2][1], rows[3][1]
    params_s = rows[-1][1]
    lines = [f"CLI start-up, median of {args.runs} fresh processes ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f})", "",
             "| process | wall s | / import torch | target | met |", "|---|---:|---:|---|---|"]
    for name, seconds, target in rows:
        met = "" if target is None else ("yes" if seconds < target else "NO")
        lines.append(f"| {name} | {seconds:.3f} | {seconds / torch_s:.2f} | {'' if target is None else f'< {target} s'} | {met} |")
    extra = params_s - llama_s
    lines += ["", f"`lamina params` on the 70B config: {params_s:.3f} s, i.e. {extra:+.3f} s beyond importing transformers' "
              f"Llama modelling code ({llama_s:.3f} s; target <= +1.5 s: {'met' if extra <= 1.5 else 'NOT met'}), "
              f"{params_s - auto_s:+.3f} s beyond reaching it through the Auto classes ({auto_s:.3f} s)."]
    text = "\n".join(lines) + "\n"
    publish(text, "CLI start-up", args.markdown)


if __name__ == "__main__":
    main()
