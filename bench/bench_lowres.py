#!/usr/bin/env python
"""Low-resource benchmark (the UniPELT protocol, Mao et al. 2022, sec. 4.2): train on K examples, select the
checkpoint on 1,000 OTHER training examples, report the original dev set as the test set.

    .venv/bin/python bench/bench_lowres.py --jobs 2 \
        --json docs/benchmarks/lowres.json --markdown docs/benchmarks/lowres.md

Protocol (flags; written into the outputs):

* For each task, K in `--ks` and seed: K training rows and `--dev-rows` *other* training rows are drawn at
  random with that seed from the task's train.tsv (so every seed sees a different training set and a
  different selection set), written as a GLUE folder (train.tsv = K rows, dev.tsv = the selection rows)
  under `--work-dir`.
* `lamina.train.train` evaluates on the selection set `--evals` times (every ceil(steps / evals) steps,
  plus the last step) and restores the best checkpoint by the task's main metric; that checkpoint is then
  scored on the task's original dev set (`lamina.evaluate.evaluate_adapter`), which is never seen during
  training or selection. The number reported is that test score.
* Epochs depend on K (`--epochs`, default 100=5,500=2,1000=1: about 65-125 optimizer steps at batch 8).
  Learning rates per preset as in bench/bench_quality.py.
* Runs are fresh subprocesses (`--threads` torch threads, `--jobs` side by side); resumable: rows already in
  the JSON are skipped.
"""

from __future__ import annotations

import datetime as _dt
import math
import shlex
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_quality as bq  # noqa: E402

# the methods of the UniPELT paper's low-resource table (its Table 1), plus SPAFIT
LOWRES_PRESETS = ("full", "bitfit", "adapter", "prefix", "lora", "unipelt", "spafit-2-4")
DEFAULT_EPOCHS = "100=5,500=2,1000=1"  # about 65-125 optimizer steps at batch 8


def lowres_folder(data_root: Path, task: str, work_dir: Path, k: int, dev_rows: int, seed: int) -> Path:
    """GLUE folder: train.tsv = K random train rows, dev.tsv = `dev_rows` other random train rows."""
    folder = bq.FOLDERS[task]
    dst = work_dir / "data" / f"{task}-k{k}-dev{dev_rows}-s{seed}"
    if (dst / folder / "train.tsv").is_file() and (dst / folder / "dev.tsv").is_file():
        return dst
    header, rows = bq.read_tsv_lines(data_root / folder / "train.tsv")
    train_idx = bq.sample_rows(rows, k, seed)
    dev_idx = bq.sample_rows(rows, dev_rows, seed + 10_000, exclude=set(train_idx))
    assert not set(train_idx) & set(dev_idx)
    bq.write_tsv(dst / folder / "train.tsv", header, [rows[i] for i in train_idx])
    bq.write_tsv(dst / folder / "dev.tsv", header, [rows[i] for i in dev_idx])
    return dst


def parse_epochs(text: str) -> dict[int, float]:
    out = {}
    for item in filter(None, text.split(",")):
        k, _, e = item.partition("=")
        out[int(k)] = float(e)
    return out


def summarise(rows: list[dict], labels: list[str], tasks: list[str], ks: list[int]) -> dict:
    by: dict = {}
    for r in rows:
        by.setdefault((r["label"], r["task"], r["k"]), []).append(r)
    out = {}
    for label in labels:
        for t in tasks:
            for k in ks:
                rs = sorted(by.get((label, t, k), []), key=lambda r: r["seed"])
                if not rs:
                    continue
                test_mean, test_std = bq._ms([100 * r["main_score"] for r in rs])
                dev_mean, dev_std = bq._ms([100 * r["dev_score"] for r in rs])
                out.setdefault(label, {}).setdefault(t, {})[str(k)] = {
                    "test_mean": test_mean, "test_std": test_std, "dev_mean": dev_mean, "dev_std": dev_std,
                    "n": len(rs), "seeds": [r["seed"] for r in rs], "test_scores": [100 * r["main_score"] for r in rs],
                    "trainable_params": rs[0]["trainable_params"],
                }
    return out


def test_sizes(rows: list[dict]) -> str:
    sizes = {}
    for r in rows:
        sizes.setdefault(r["task"], r["test_examples"])
    return ", ".join(f"{bq.TASK_TITLE.get(t, t)} {n:,} examples" for t, n in sizes.items()) or "no runs yet"


def render_markdown(data: dict, path: Path | None) -> str:
    meta, p = data["meta"], data["meta"]["protocol"]
    labels, tasks, ks = list(p["presets"]), p["tasks"], sorted(set(p["ks"]) | {r["k"] for r in data["rows"]})
    summary = summarise(data["rows"], labels, tasks, ks)
    lines = [
        "# Low-resource benchmark (UniPELT protocol)", "", f"Model: {p['model']}.", "",
        "Command(s):", "", *[f"    {c}" for c in meta.get("commands", [])], "",
        f"K training examples and {p['dev_rows']} *other* training examples (the selection set) drawn at random with "
        f"the run seed from each task's train.tsv; {p['evals']} evaluations on the selection set during training, the "
        f"best one's checkpoint restored and scored on the task's original dev set (the test set here; "
        f"{test_sizes(data['rows'])}). Epochs per K: {', '.join(f'K={k}: {e:g}' for k, e in p['epochs'].items())}; batch "
        f"{p['batch_size']}, max length {p['max_length']}, AdamW, linear decay, 6 % warm-up. Learning rates: "
        + ", ".join(f"{label} {v[1]:g}" for label, v in p["presets"].items())
        + f". Regression head: {p.get('regression_head_init', 'random')} initial bias. Seeds {p['seeds']}. Scores x100 (SST-2 accuracy, STS-B (Pearson + Spearman) / 2); mean ± sample std "
        "over seeds (a bare number: one seed), number of seeds in brackets.", "",
    ]
    for t in tasks:
        lines += [f"### {bq.TASK_TITLE.get(t, t)} — test (original dev set)", "",
                  "| method | trainable |" + "".join(f" K={k} |" for k in ks), "|---|---:|" + "---:|" * len(ks)]
        for label in labels:
            cells = summary.get(label, {}).get(t, {})
            if not cells:
                continue
            trainable = next(iter(cells.values()))["trainable_params"]
            row = f"| {label} | {bq.fmt_params(trainable)} |"
            for k in ks:
                c = cells.get(str(k))
                row += f" {bq.cell(c['test_mean'], c['test_std'], c['n'])} ({c['n']}) |" if c else " – |"
            lines.append(row)
        lines.append("")
        lines += [f"Selection-set score of the chosen checkpoint ({bq.TASK_TITLE.get(t, t)}):", "",
                  "| method |" + "".join(f" K={k} |" for k in ks), "|---|" + "---:|" * len(ks)]
        for label in labels:
            cells = summary.get(label, {}).get(t, {})
            if cells:
                lines.append(f"| {label} |" + "".join(
                    f" {bq.cell(cells[str(k)]['dev_mean'], cells[str(k)]['dev_std'], cells[str(k)]['n'])} |" if str(k) in cells else " – |"
                    for k in ks))
        lines.append("")
    lines.append(f"{len(data['rows'])} runs; last updated {meta.get('last_updated', '')}.")
    text = "\n".join(lines) + "\n"
    if path is not None:
        bq.write_file(path, text)
    return text


def parse_args(argv=None):
    p = bq.run_parser(__doc__, "lowres", ("sst2", "stsb"), LOWRES_PRESETS)
    p.add_argument("--ks", nargs="+", type=int, default=[100, 500, 1000])
    p.add_argument("--dev-rows", type=int, default=1000, help="held-out train rows used for checkpoint selection")
    p.add_argument("--evals", type=int, default=2, help="evaluations on the selection set per run")
    p.add_argument("--epochs", default=DEFAULT_EPOCHS, help=f"epochs per K (default {DEFAULT_EPOCHS})")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    argv_list = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv_list)
    unknown = [p for p in args.presets if p not in bq.PRESETS]
    if unknown:
        raise SystemExit(f"unknown preset label(s) {unknown}; known: {', '.join(bq.PRESETS)}")
    presets = bq.learning_rates(args)
    epochs = parse_epochs(args.epochs)
    missing = [k for k in args.ks if k not in epochs]
    if missing:
        raise SystemExit(f"--epochs gives no epochs for K={missing}")
    model = args.model or bq.default_model()
    protocol = {"model": bq.DEFAULT_MODEL_NAME if args.model is None else model, "tasks": args.tasks,
                "dev_rows": args.dev_rows, "evals": args.evals, "epochs": {str(k): epochs[k] for k in sorted(epochs)},
                "batch_size": args.batch_size, "max_length": args.max_length, "regression_head_init": "label mean",
                "presets": {k: [v[0], v[1]] for k, v in presets.items()}, "ks": args.ks}
    command = "bench/bench_lowres.py " + " ".join(shlex.quote(a) for a in argv_list)
    meta = {"protocol": protocol, "commands": [command],
            "first_started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    store = bq.Store(args.json, meta, lambda d: render_markdown(d, args.markdown))
    store.data["meta"]["protocol"].update(
        seeds=sorted(set(args.seeds) | {r["seed"] for r in store.data["rows"]}),
        ks=sorted(set(args.ks) | {r["k"] for r in store.data["rows"]}), threads=args.threads, jobs=args.jobs)
    for other in args.merge_from:
        print(f"merged {store.merge_from(other)} row(s) from {other}")
    jobs = []
    for seed in args.seeds:
        for task in args.tasks:
            for k in args.ks:
                data_dir = lowres_folder(args.data_dir, task, args.work_dir, k, args.dev_rows, seed)
                steps = math.ceil(k / args.batch_size) * epochs[k]
                for label, (preset, lr) in presets.items():
                    jobs.append(dict(task=task, label=label, preset=preset, lr=lr, seed=seed, k=k, model=model,
                                     data_dir=str(data_dir), test_data_dir=str(args.data_dir), epochs=epochs[k],
                                     batch_size=args.batch_size, max_length=args.max_length, threads=args.threads,
                                     eval_steps=max(1, math.ceil(steps / args.evals)), gates=False,
                                     out_dir=str(args.work_dir / "runs" / f"{task}-k{k}-{label}-s{seed}")))
    return bq.run_and_report(jobs, store, args, render_markdown)


if __name__ == "__main__":
    main()
