#!/usr/bin/env python
"""Search strategies compared on real data (issue 13, part 3): greedy vs joint vs one-shot on MiniLM / SST-2.

    PYTHONPATH=src HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python bench/bench_search.py \\
        --work-dir /tmp/search-bench --json docs/search/comparison.json --markdown docs/search/comparison.md \\
        --plots docs/search
    .venv/bin/python bench/bench_search.py --report-only --json docs/search/comparison.json ...   # tables + plots

Protocol (every knob is a flag and is written into the outputs):

1. Data: `--train-rows` + `--heldout-rows` random rows of the SST-2 training set (`--subset-seed`). The searches
   train on the first part and score every trial on the held-out part (a *search dev set* cut from training
   data); the official dev set is never seen by a search.
2. Searches: each strategy x `--search-seeds` (the space seed and the trials' training seed), `lamina search`
   at one budget with the same training settings (`--epochs`, `--batch-size`, `--max-length`, `--lr`), one
   worker, `--threads` torch threads. Each search ends with one training of its final design under those
   settings: the compute ledger's reference (its cost in full-training equivalents).
3. Retraining: each search's final design (design.yaml) trained with `--retrain-seeds` on the same training
   rows, scored by its final model on the **full official dev set** (872 rows).
4. Resumable: a search resumes from its study; a retraining with a results.json is skipped; the JSON is
   rewritten atomically after every step.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ("greedy", "joint", "one-shot")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/search-bench"))
    p.add_argument("--glue", type=Path, default=ROOT.parent / "shared" / "data" / "glue")
    p.add_argument("--json", type=Path, default=ROOT / "docs" / "search" / "comparison.json")
    p.add_argument("--markdown", type=Path, default=ROOT / "docs" / "search" / "comparison.md")
    p.add_argument("--plots", type=Path, default=ROOT / "docs" / "search")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--search-seeds", default="0,1,2")
    p.add_argument("--retrain-seeds", default="100,101,102")
    p.add_argument("--train-rows", type=int, default=2000)
    p.add_argument("--heldout-rows", type=int, default=500)
    p.add_argument("--subset-seed", type=int, default=0)
    p.add_argument("--budget", default="0.5%")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--greedy", default="--trials-per-stage 3", help="extra flags of the greedy searches")
    p.add_argument("--joint", default="--trials 8 --eval-steps 16 --reduction-factor 2", help="extra flags, joint")
    p.add_argument("--one-shot", dest="one_shot", default="", help="extra flags, one-shot")
    p.add_argument("--report-only", action="store_true", help="only rebuild the tables and plots from --json")
    return p.parse_args(argv)


def prepare_data(args) -> tuple[Path, Path]:
    """(search folder: train + held-out training rows as dev.tsv, retrain folder: train + the official dev)."""
    source = args.glue / "SST-2"
    header, *rows = (source / "train.tsv").read_text().splitlines()
    picked = random.Random(args.subset_seed).sample(range(len(rows)), args.train_rows + args.heldout_rows)
    train = [rows[i] for i in picked[:args.train_rows]]
    heldout = [rows[i] for i in picked[args.train_rows:]]
    search, retrain = args.work_dir / "data" / "search", args.work_dir / "data" / "retrain"
    for folder, dev in ((search, [header, *heldout]), (retrain, (source / "dev.tsv").read_text().splitlines())):
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / "train.tsv", "\n".join([header, *train]) + "\n")
        _write(folder / "dev.tsv", "\n".join(dev) + "\n")
    return search, retrain


def _write(path: Path, text: str) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from lamina.util import atomic_write_text

    if not path.is_file() or path.read_text() != text:
        atomic_write_text(path, text)


def common(args) -> list[str]:
    """The training settings every search trial and every retraining share (torch threads: OMP_NUM_THREADS)."""
    return ["--task", "sst2", "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
            "--max-length", str(args.max_length), "--lr", str(args.lr)]


def lamina(argv: list[str], log: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(ARGS.threads), "TRANSFORMERS_VERBOSITY": "error",
           "PYTHONPATH": str(ROOT / "src")}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as handle:
        code = subprocess.call([sys.executable, "-m", "lamina.cli", *argv], env=env, stdout=handle, stderr=handle)
    if code:
        raise SystemExit(f"lamina {' '.join(argv[:3])} failed (exit {code}); see {log}")


def search(args, strategy: str, seed: int, data: Path) -> tuple[dict, list[str]]:
    out = args.work_dir / "runs" / f"{strategy}-s{seed}"
    extra = {"greedy": args.greedy, "joint": args.joint, "one-shot": args.one_shot}[strategy].split()
    argv = ["search", *common(args), "--budget", args.budget, "--threads", str(args.threads), "--data-dir", str(data), "--strategy", strategy, "--seed", str(seed),
            "--train-seed", str(seed), "--study", f"{strategy}-s{seed}", "--output", str(out), *extra]
    record = out / "search.json"
    done = record.is_file() and (json.loads(record.read_text()).get("final") or {}).get("training")
    if not done:
        started = time.time()
        lamina(argv, out.parent / f"{strategy}-s{seed}.log")
        print(f"search {strategy} seed {seed}: {time.time() - started:.0f} s", flush=True)
    return json.loads(record.read_text()), argv


def retrain(args, strategy: str, seed: int, design: Path, data: Path, train_seed: int) -> tuple[dict, list[str]]:
    out = args.work_dir / "retrain" / f"{strategy}-s{seed}-r{train_seed}"
    argv = ["train", *common(args), "--data-dir", str(data),
            "--design", str(design), "--seed", str(train_seed), "--output", str(out), "--no-progress"]
    if not (out / "results.json").is_file():
        lamina(argv, out.parent / f"{out.name}.log")
    return json.loads((out / "results.json").read_text()), argv


def summarise(record: dict) -> dict:
    ledger, final = record["ledger"], record["final"]
    return {"final_label": final["label"], "design": final["design"], "sized_design": final.get("sized_design"),
            "budget": final.get("budget"), "search_score": final["training"]["value"],
            "reused_trial": final["training"].get("reused"), "equivalents": ledger["equivalents"],
            "total": ledger["total"], "reference": ledger["reference"], "phases": ledger["phases"],
            "anytime": ledger["anytime"], "trials": record["compute"]["trials"], "pruned": record["compute"]["pruned"],
            "supernet": (record["stages"][0].get("supernet") or {}).get("expected_trajectory") and {
                k: record["stages"][0]["supernet"][k] for k in ("expected_start", "expected_end", "score", "gates")}}


def run(args) -> dict:
    search_data, retrain_data = prepare_data(args)
    results = json.loads(args.json.read_text()) if args.json.is_file() else {}
    results["protocol"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "report_only"}
    results.setdefault("runs", {})
    for seed in [int(s) for s in args.search_seeds.split(",")]:  # seed-major: every strategy of seed 0 first
        for strategy in args.strategies.split(","):
            key = f"{strategy}-s{seed}"
            record, argv = search(args, strategy, seed, search_data)
            entry = {"strategy": strategy, "seed": seed, "command": "lamina " + " ".join(argv), **summarise(record),
                     "retrain": results["runs"].get(key, {}).get("retrain", {})}
            results["runs"][key] = entry
            save(args, results)
            design = args.work_dir / "runs" / key / "design.yaml"
            for r in [int(s) for s in args.retrain_seeds.split(",")]:
                if str(r) in entry["retrain"]:
                    continue
                res, rargv = retrain(args, strategy, seed, design, retrain_data, r)
                entry["retrain"][str(r)] = {"score": res["main_score"], "trainable": res["trainable_params"],
                                            "budget": res["params_report"]["budget"], "steps": res["global_step"],
                                            "train_time_s": res["train_time_s"], "command": "lamina " + " ".join(rargv)}
                save(args, results)
    return results


def save(args, results: dict) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from lamina.util import atomic_write_text

    atomic_write_text(args.json, json.dumps(results, indent=1) + "\n")
    report(args, results)


# --------------------------------------------------------------------------- tables and plots


def _ms(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    values = [v * scale for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _to_adapter(run: dict) -> float:
    """Search cost plus the final design's training, unless a search trial already was that training."""
    return run["equivalents"]["cpu_s"] + (0.0 if run.get("reused_trial") else 1.0)


def report(args, results: dict) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from lamina.report import markdown_table, plot_curves
    from lamina.util import atomic_write_text

    runs = results.get("runs", {})
    by = {s: [r for r in runs.values() if r["strategy"] == s] for s in STRATEGIES}
    rows, per_run = [], []
    for s, rs in by.items():
        if not rs:
            continue
        retrained = [statistics.fmean(v["score"] for v in r["retrain"].values()) for r in rs if r["retrain"]]
        rows.append([s, len(rs), _ms([r["search_score"] for r in rs], 100), _ms(retrained, 100),
                     _ms([r["equivalents"]["cpu_s"] for r in rs], digits=2), _ms([r["equivalents"]["steps"] for r in rs], digits=2),
                     _ms([_to_adapter(r) for r in rs], digits=2),
                     _ms([r["total"]["cpu_s"] / 60 for r in rs], digits=1), _ms([r["reference"]["cpu_s"] for r in rs], digits=0)])
        for r in sorted(rs, key=lambda r: r["seed"]):
            scores = [v["score"] for v in r["retrain"].values()]
            b = r["budget"] or {}
            per_run.append([s, r["seed"], r["final_label"], f"{b.get('achieved', 0):,} / {b.get('target', 0):,}",
                            f"{100 * r['search_score']:.1f}", _ms(scores, 100), len(scores), r["trials"], r["pruned"],
                            f"{r['equivalents']['cpu_s']:.2f}", f"{r['equivalents']['steps']:.2f}",
                            f"{r['total']['cpu_s']:.0f}", f"{r['reference']['cpu_s']:.0f}"])
    lines = ["# Search strategies compared: MiniLM on SST-2 (made by bench/bench_search.py)", "",
             "Scores x100. *held-out*: the final design's own training in the search, scored on the search's held-out "
             "training rows; *dev (retrained)*: the final design retrained with each retrain seed on the same training "
             "rows, scored on the full official dev set (mean over retrain seeds, then mean ± std over search seeds). "
             "Cost: the search (without the final design's training) in full-training equivalents: CPU time / the "
             "final design's one training (and the same in optimizer steps); *to a trained adapter*: plus that one "
             "training where the search did not already hold it (joint's best trial is its final training).", "",
             markdown_table(["strategy", "searches", "held-out", "dev (retrained)", "cost (trainings, CPU)",
                             "cost (trainings, steps)", "to a trained adapter (trainings, CPU)", "search CPU min",
                             "one training CPU s"], rows), "",
             markdown_table(["strategy", "search seed", "final design", "trainable w/o head / budget", "held-out",
                             "dev (retrained)", "retrains", "trials", "pruned", "cost (CPU)", "cost (steps)",
                             "search CPU s", "training CPU s"], per_run), ""]
    atomic_write_text(args.markdown, "\n".join(lines))
    colors = {"greedy": "C0", "joint": "C1", "one-shot": "C2"}
    series = []
    for key, r in sorted(runs.items()):
        pts = [p for p in r["anytime"] if p.get("cpu_equivalents") is not None]
        trials = [p for p in pts if p["kind"] == "trial" and p["best"] is not None]
        final = [p for p in pts if p["kind"] == "final"]
        series.append({"label": key, "color": colors[r["strategy"]], "x": [p["cpu_equivalents"] for p in trials],
                       "y": [100 * p["best"] for p in trials],
                       "points": [(p["cpu_equivalents"], 100 * p["best"], "final") for p in final]})
    if series:
        plot_curves(series, args.plots / "comparison-anytime.png", title="best held-out score so far vs compute "
                    "(MiniLM, SST-2, 0.5 % budget)", xlabel="compute spent (full-training equivalents, CPU time)",
                    ylabel="best trial score (held-out training rows, x100)")


ARGS = argparse.Namespace(threads=1)


def main(argv=None) -> dict:
    global ARGS
    args = ARGS = parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        results = json.loads(args.json.read_text())
        report(args, results)
        return results
    return run(args)


if __name__ == "__main__":
    main()
