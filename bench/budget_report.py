"""Tables, paired comparisons and plots of the budget benchmark (bench_budget.py), all from its results JSON:

    .venv/bin/python bench/bench_budget.py --report-only --json docs/benchmarks/budget.json \
        --markdown docs/benchmarks/budget.md
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import bench_quality as bq

T = bq.TASK_TITLE


def _ms(xs):
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def main_rows(data: dict) -> list[dict]:
    return [r for r in data["rows"] if r.get("phase") == "main"]


def scores(rows: list[dict]) -> dict:
    """{(label, task): {seed: score x100}}"""
    out: dict = {}
    for r in rows:
        out.setdefault((r["label"], r["task"]), {})[r["seed"]] = 100 * r["main_score"]
    return out


def summary(data: dict) -> dict:
    p = data["meta"]["protocol"]
    sc = scores(main_rows(data))
    out = {}
    for label in p["presets"]:
        tasks = {t: sc[(label, t)] for t in p["tasks"] if (label, t) in sc}
        if not tasks:
            continue
        e = {"tasks": {t: dict(zip(("mean", "std"), _ms(list(v.values()))), n=len(v)) for t, v in tasks.items()}}
        e["average"] = statistics.fmean(x["mean"] for x in e["tasks"].values()) if len(tasks) == len(p["tasks"]) else None
        out[label] = e
    return out


def paired(data: dict, label: str, against: tuple[str, ...]) -> dict | None:
    """`label` against the best of `against` (by 5-task average over the seeds both have): per-seed
    differences of the task average, mean difference and a paired t-test (scipy), and the same over every
    (task, seed) pair."""
    p = data["meta"]["protocol"]
    sc = scores(main_rows(data))
    tasks = p["tasks"]

    def full_seeds(lab):
        sets = [set(sc.get((lab, t), {})) for t in tasks]
        return set.intersection(*sets) if sets else set()

    mine = full_seeds(label)
    cands = {b: full_seeds(b) & mine for b in against if full_seeds(b) & mine}
    if not cands:
        return None
    avg = {b: statistics.fmean(sc[(b, t)][s] for t in tasks for s in cands[b]) for b in cands}
    best = max(avg, key=avg.get)
    seeds = sorted(cands[best])
    per_seed = [statistics.fmean(sc[(label, t)][s] - sc[(best, t)][s] for t in tasks) for s in seeds]
    pairs = [(sc[(label, t)][s], sc[(best, t)][s]) for t in tasks for s in seeds]
    res = {"label": label, "best_uniform": best, "seeds": seeds, "per_seed_diff": per_seed,
           "mean_diff": statistics.fmean(per_seed), "p_seeds": None, "p_pairs": None, "n_pairs": len(pairs),
           "per_task_diff": {t: statistics.fmean(sc[(label, t)][s] - sc[(best, t)][s] for s in seeds) for t in tasks}}
    from scipy import stats

    if len(seeds) > 1:
        res["p_seeds"] = float(stats.ttest_rel([statistics.fmean(sc[(label, t)][s] for t in tasks) for s in seeds],
                                               [statistics.fmean(sc[(best, t)][s] for t in tasks) for s in seeds]).pvalue)
    if len(pairs) > 1:
        res["p_pairs"] = float(stats.ttest_rel([a for a, _ in pairs], [b for _, b in pairs]).pvalue)
    return res


def _f(x, fmt="{:.1f}"):
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def throughput_section(data: dict) -> list[str]:
    meta, p = data["meta"], data["meta"]["protocol"]
    tp = meta.get("throughput")
    if not tp:
        return ["No throughput measurement recorded (run `bench_budget.py --throughput` first).", ""]
    import budget_throughput as bt

    text = [f"Measured {tp['measured']} (`--throughput`; real rows, batch {p['batch_size']}, eval batch 64; the last "
            "column is the machine's load average, which other people's jobs drive: a second torch thread only pays "
            "when the second core is free, and on this shared machine it mostly is not — hence 1 thread):", "",
            bt.table(tp["rows"]), ""]
    rate = {(r["task"], r["design"] == "full", r["threads"]): r for r in tp["rows"]}
    counts = meta.get("train_counts", {})
    dev = meta.get("dev_counts", {})
    if not counts or not all((t, False, 1) in rate for t in p["tasks"]):
        return text
    # estimate (1 thread): per run 8 s start-up + training + `evals` passes over the dev set
    rows = [lab for lab in p["presets"]]
    text += ["Sizing arithmetic (1 thread; a PEFT row trains at the LoRA rate, UniPELT at 1/1.25 of it, "
             "full fine-tuning at its own rate; 8 s start-up per run):", "",
             "| task | train rows x epochs | steps | PEFT run s | full run s |", "|---|---:|---:|---:|---:|"]
    per_seed = 0.0
    for t in p["tasks"]:
        n = counts[t] * p["epochs"][t]
        ev = p["evals"] * dev[t] / rate[(t, False, 1)]["eval_examples_per_s"]
        peft = 8 + n / rate[(t, False, 1)]["train_examples_per_s"] + ev
        full = 8 + n / rate[(t, True, 1)]["train_examples_per_s"] + ev
        steps = math.ceil(p["epochs"][t] * math.ceil(counts[t] / p["batch_size"]))
        text.append(f"| {T.get(t, t)} | {counts[t]:,} x {p['epochs'][t]:g} | {steps} | {peft:.0f} | {full:.0f} |")
        per_seed += sum(full if lab == "full" else peft * (1.25 if lab == "unipelt" else 1.0) for lab in rows)
    sw = p["sweep"]
    sweep = 0.0
    for t in sw["tasks"]:
        n = sw["train_rows"] * sw["epochs"]
        ev = sw["heldout_rows"] / rate[(t, False, 1)]["eval_examples_per_s"]
        for fam, grid in p["lr_grid"].items():
            r = rate[(t, fam == "full", 1)]["train_examples_per_s"] * (0.8 if fam == "unipelt" else 1.0)
            sweep += len(grid) * (8 + n / r + ev)
        sweep += len(sw["spafit_candidates"]) * (8 + n / rate[(t, False, 1)]["train_examples_per_s"] + ev)
    total = per_seed * len(p["seeds"]) + sweep
    text += ["", f"Estimate: sweep {sweep / 3600:.2f} h; one seed of all {len(rows)} rows x {len(p['tasks'])} tasks "
             f"{per_seed / 3600:.2f} h; the whole table ({len(p['seeds'])} seeds + sweep) **{total / 3600:.1f} h** at 1 job x "
             "1 thread on an otherwise idle core (a busy machine stretches it; every run records its load average).", ""]
    done = main_rows(data) + [r for r in data["rows"] if r.get("phase") == "sweep"]
    if done:
        text += [f"Measured so far: {len(done)} runs took {sum(r['wall_s'] for r in done) / 3600:.2f} h of run time "
                 f"(median load average at the end of a run {statistics.median(float(r['loadavg_end'].split()[0]) for r in done):.2f}).", ""]
    return text


def sweep_section(data: dict) -> list[str]:
    p, d = data["meta"]["protocol"], data["meta"].get("decided", {})
    sw = p["sweep"]
    rows = {(r["label"], r["task"]): 100 * r["main_score"] for r in data["rows"] if r.get("phase") == "sweep"}
    text = [f"Each sweep run trains on {sw['train_rows']:,} random training rows for {sw['epochs']:g} epochs and is scored "
            f"(final model) on {sw['heldout_rows']} *other training rows* (seed {sw['seed']}); the dev sets are not used. "
            "Representatives: " + ", ".join(f"{f} → {r}" for f, r in sw["representatives"].items()) +
            " (adapter-houlsby takes the adapter family's LR, spafit LoRA's, suggest / search the mixed family's).", "",
            "| family | lr | " + " | ".join(T.get(t, t) for t in sw["tasks"]) + " | mean | chosen |",
            "|---|---:|" + "---:|" * len(sw["tasks"]) + "---:|---|"]
    for fam, grid in p["lr_grid"].items():
        for lr in grid:
            lab = f"sweep:{fam}:lr={lr:g}"
            cells = [_f(rows.get((lab, t))) for t in sw["tasks"]]
            mean = d.get("scores", {}).get(fam, {}).get(f"{lr:g}")
            mark = "**yes**" if d.get("lr", {}).get(fam) == lr else ""
            text.append(f"| {fam} | {lr:g} | " + " | ".join(cells) + f" | {_f(mean)} | {mark} |")
    text += ["", "SPAFIT cut points (layers < n1 frozen, n1..n2-1 BitFit, n2.. LoRA + BitFit; all at the budget), "
             "at the LoRA family's LR:", "", "| n1-n2 | " + " | ".join(T.get(t, t) for t in sw["tasks"]) + " | mean | chosen |",
             "|---|" + "---:|" * len(sw["tasks"]) + "---:|---|"]
    for a, b in sw["spafit_candidates"]:
        lab = f"sweep:spafit:{a}-{b}"
        mean = d.get("spafit_scores", {}).get(f"{a}-{b}")
        mark = "**yes**" if d.get("spafit") == f"n1={a},n2={b}" else ""
        text.append(f"| {a}-{b} | " + " | ".join(_f(rows.get((lab, t))) for t in sw["tasks"]) + f" | {_f(mean)} | {mark} |")
    return text + [""]


def main_table(data: dict) -> list[str]:
    p = data["meta"]["protocol"]
    s = summary(data)
    rows = main_rows(data)
    first = {}
    for r in rows:
        first.setdefault(r["label"], r)
    lines = ["| method | design | lr | trainable w/o head (% of base) | " + " | ".join(T.get(t, t) for t in p["tasks"])
             + " | avg | seeds |", "|---|---|---:|---:|" + "---:|" * len(p["tasks"]) + "---:|---:|"]
    for label, e in s.items():
        r = first[label]
        tr = r.get("trainable_no_head")
        params = f"{bq.fmt_params(tr)} ({r['trainable_percent_without_head']:.3f} %)" if tr is not None else "–"
        cells = [bq.cell(e["tasks"][t]["mean"], e["tasks"][t]["std"], e["tasks"][t]["n"]) if t in e["tasks"] else "–"
                 for t in p["tasks"]]
        ns = "/".join(str(e["tasks"][t]["n"]) if t in e["tasks"] else "0" for t in p["tasks"])
        lines.append(f"| {label} | `{r['design']}` | {r['lr']:g} | {params} | " + " | ".join(cells)
                     + f" | {_f(e['average'])} | {ns} |")
    win = []
    for t in p["tasks"]:
        c = {lab: e["tasks"][t]["mean"] for lab, e in s.items() if t in e["tasks"]}
        if c:
            best = max(c, key=c.get)
            win.append(f"{T.get(t, t)}: **{best}** {c[best]:.1f}")
    return lines + ["", "Per-task winner (highest mean; check the ± before reading much into it): " + ("; ".join(win) or "–"), ""]


def cost_table(data: dict) -> list[str]:
    p = data["meta"]["protocol"]
    by: dict = {}
    for r in main_rows(data):
        by.setdefault((r["label"], r["task"]), []).append(r)
    labels = [lab for lab in p["presets"] if any((lab, t) in by for t in p["tasks"])]
    lines = ["Median over seeds: wall time of the run (s; process start to end, including its evaluations) / optimizer "
             "steps. Probe: the suggest probe's steps and seconds (included in the wall time).", "",
             "| method | " + " | ".join(T.get(t, t) for t in p["tasks"]) + " | total wall h (all runs) | probe |",
             "|---|" + "---:|" * len(p["tasks"]) + "---:|---|"]
    for lab in labels:
        cells = []
        for t in p["tasks"]:
            rs = by.get((lab, t), [])
            cells.append(f"{statistics.median(r['wall_s'] for r in rs):.0f} / {rs[0]['global_step']}" if rs else "–")
        allr = [r for t in p["tasks"] for r in by.get((lab, t), [])]
        probes = [r["suggest"] for r in allr if r.get("suggest")]
        probe = "–"
        if probes:
            def med(key):  # lamina.suggest's probe record: steps, fraction (of planned steps), wall_s
                xs = [x[key] for x in probes if x.get(key) is not None]
                return statistics.median(xs) if xs else None

            frac = med("fraction")
            probe = (f"{_f(med('steps'), '{:.0f}')} steps ({_f(None if frac is None else 100 * frac, '{:.2f}')} % of "
                     f"the run's), {_f(med('wall_s'), '{:.0f}')} s (median)")
        lines.append(f"| {lab} | " + " | ".join(cells) + f" | {sum(r['wall_s'] for r in allr) / 3600:.2f} | {probe} |")
    return lines + [""]


def curve_table(data: dict) -> list[str]:
    """Mean over seeds of the dev score at each evaluation point; Δ = last minus the one before."""
    p = data["meta"]["protocol"]
    by: dict = {}
    for r in main_rows(data):
        by.setdefault((r["label"], r["task"]), []).append(r["curve"])
    lines = [f"Dev score (x100, mean over seeds) at each of the {p['evals']} evenly spaced evaluations; Δ: last minus "
             "previous point (a clearly positive Δ means the row was still improving when training stopped).", "",
             "| method | " + " | ".join(T.get(t, t) for t in p["tasks"]) + " |", "|---|" + "---|" * len(p["tasks"])]
    for lab in p["presets"]:
        if not any((lab, t) in by for t in p["tasks"]):
            continue
        cells = []
        for t in p["tasks"]:
            curves = by.get((lab, t))
            if not curves:
                cells.append("–")
                continue
            k = min(len(c) for c in curves)
            pts = [100 * statistics.fmean(c[i]["score"] for c in curves) for i in range(k)]
            delta = pts[-1] - pts[-2] if k > 1 else float("nan")
            cells.append(" → ".join(f"{x:.1f}" for x in pts) + f" (Δ {_f(delta, '{:+.1f}')})")
        lines.append(f"| {lab} | " + " | ".join(cells) + " |")
    return lines + [""]


def paired_section(data: dict) -> list[str]:
    import bench_budget as bb

    lines = [f"Each layer-wise row against the best uniform single method ({', '.join(bb.UNIFORM)}; best = highest "
             "five-task average over the seeds both rows have). Δ = row minus that method (points x100); p: paired "
             "t-test (scipy.stats.ttest_rel) over seeds of the five-task average, and over all (task, seed) pairs.", "",
             "| row | vs | seeds | Δ per seed | mean Δ | p (seeds) | p (task x seed) | Δ per task |",
             "|---|---|---|---|---:|---:|---:|---|"]
    p = data["meta"]["protocol"]
    for lab in bb.LAYERWISE:
        res = paired(data, lab, bb.UNIFORM)
        if res is None:
            lines.append(f"| {lab} | – | – | not yet (needs all tasks of a seed for this row and a uniform row) | | | | |")
            continue
        per_task = ", ".join(f"{T.get(t, t)} {res['per_task_diff'][t]:+.1f}" for t in p["tasks"])
        lines.append(f"| {lab} | {res['best_uniform']} | {res['seeds']} | " + ", ".join(f"{d:+.2f}" for d in res["per_seed_diff"])
                     + f" | {res['mean_diff']:+.2f} | {_f(res['p_seeds'], '{:.3f}')} | {_f(res['p_pairs'], '{:.3f}')} "
                     f"(n={res['n_pairs']}) | {per_task} |")
    return lines + [""]


ABBREV = {"lora": "L", "adapter": "A", "prefix": "P", "bitfit": "B", "ln": "N", "ia3": "I"}


def design_cells(design: dict) -> dict[int, list[str]]:
    """layer -> the methods a design puts there (a design as stored in results: groups with first/last)."""
    cells: dict[int, list[str]] = {}
    for g in design.get("groups", []):
        for layer in range(g["first"], g["last"] + 1):
            cells[layer] = [s["method"] for s in g.get("strategies", [])]
    return cells


def design_summary(design: dict) -> str:
    """One line per design: `L0-3 B+N · L4-5 L(r13)+A(24)+B+N` (letters: ABBREV; sizes in brackets)."""
    parts = []
    for g in design.get("groups", []):
        names = []
        for s in g.get("strategies", []):
            size = s.get("r") or s.get("bottleneck") or s.get("length")
            names.append(ABBREV.get(s["method"], s["method"]) + (f"({size})" if size else ""))
        span = f"L{g['first']}" + (f"-{g['last']}" if g["last"] != g["first"] else "")
        parts.append(f"{span} {'+'.join(names) or 'frozen'}")
    return " · ".join(parts) or "(no groups)"


def suggested(data: dict) -> dict[str, dict[int, dict]]:
    """task -> seed -> the design `auto:` resolved to in that run."""
    out: dict[str, dict[int, dict]] = {}
    for r in main_rows(data):
        if r["label"] == "suggest" and r.get("design_resolved"):
            out.setdefault(r["task"], {})[r["seed"]] = r["design_resolved"]
    return out


def layer_map_section(data: dict) -> list[str]:
    chosen = suggested(data)
    if not chosen:
        return ["No suggested designs yet.", ""]
    letters = ", ".join(f"{v} {k}" for k, v in ABBREV.items())
    lines = [f"The design `auto:` resolved to in each run (probe on that run's training data and seed). Letters: {letters}; "
             "LoRA rank and adapter bottleneck in brackets; layers not listed are frozen.", "",
             "| task | seed | design |", "|---|---:|---|"]
    for t in data["meta"]["protocol"]["tasks"]:
        for seed, d in sorted(chosen.get(t, {}).items()):
            lines.append(f"| {T.get(t, t)} | {seed} | {design_summary(d)} |")
    return lines + [""]


def layer_map_plot(data: dict, path: Path) -> Path | None:
    """Per task, layers x methods: the share of seeds whose suggested design puts the method in the layer."""
    import plots as pl

    chosen = suggested(data)
    if not chosen:
        return None
    plt = pl._plt()
    tasks = [t for t in data["meta"]["protocol"]["tasks"] if t in chosen]
    cells = {t: [design_cells(d) for d in chosen[t].values()] for t in tasks}
    n_layers = 1 + max((max(c) for cs in cells.values() for c in cs if c), default=0)
    methods = [m for m in ABBREV if any(m in ms for cs in cells.values() for c in cs for ms in c.values())]
    fig, axes = plt.subplots(1, len(tasks), figsize=(2.2 + 0.45 * n_layers * len(tasks), 0.5 * len(methods) + 1.6), squeeze=False)
    for ax, t in zip(axes[0], tasks):
        share = [[statistics.fmean(m in c.get(layer, []) for c in cells[t]) for layer in range(n_layers)] for m in methods]
        ax.imshow(share, vmin=0, vmax=1, cmap="Blues", aspect="auto")
        ax.set_xticks(range(n_layers))
        ax.set_yticks(range(len(methods)))
        ax.set_yticklabels(methods)
        ax.set_xlabel("layer")
        ax.set_title(f"{T.get(t, t)} ({len(cells[t])} seeds)")
        for i, row in enumerate(share):
            for j, v in enumerate(row):
                if v:
                    ax.text(j, i, f"{v:.0%}" if v < 1 else "all", ha="center", va="center", fontsize=7,
                            color="white" if v > 0.6 else "black")
    fig.suptitle("lamina suggest: share of seeds placing each method in each layer", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def render(data: dict, path: Path | None, plots_dir: Path | None = None) -> str:
    meta, p = data["meta"], data["meta"]["protocol"]
    epochs = ", ".join(f"{T.get(t, t)} {e:g}" for t, e in p["epochs"].items())
    rows_txt = ", ".join(f"{T.get(t, t)} {'%s random rows (subset seed %s)' % (f'{n:,}', p['subset_seed']) if n else 'all'}"
                         for t, n in p["train_rows"].items())
    text = [
        "# Budget benchmark: every method at one equal budget, MiniLM on five GLUE tasks", "",
        "Made by `bench/bench_budget.py` (issue 12, part 2). Command(s):", "", *[f"    {c}" for c in meta.get("commands", [])], "",
        "## Protocol", "",
        f"Model: {p['model']}. Budget: **{p['budget']} of the base model without the task head** for every sized row "
        "(the solver sizes each preset to it; *trainable w/o head* shows what it achieved); full fine-tuning is the "
        "reference. UniPELT at this budget: `prefix_mlp=none` — its prefix re-parameterisation MLP alone is 2.58M "
        "parameters (23x the budget), so the prefix trains as plain keys/values; the three gated parts (adapter, "
        "prefix, LoRA) are kept and solved together to the budget.", "",
        f"Training rows: {rows_txt}. Epochs: {epochs}. Batch {p['batch_size']}, max length "
        + ", ".join(f"{T.get(t, t)} {n}" for t, n in p["max_length"].items()) + " tokens, AdamW, linear decay, 6 % warm-up, "
        "weight decay 0; regression head starts at the mean training label. Score: the **final model** on the **full "
        f"official dev set**; the dev set is also evaluated at {p['evals']} evenly spaced points to record the learning "
        "curve, but nothing is selected on it. Learning rate: one per method family, from the sweep below (training "
        f"data only). Seeds {p['seeds']} (the seed changes initialisation, dropout and data order, not the rows). "
        + (meta["machine"] if meta.get("machine") else
           f"One run at a time, each in its own process with {p['threads']} torch thread(s), on a 2-core machine shared "
           "with developers (each run records its load average)."), "",
    ]
    if meta.get("baselines"):
        text += ["Floor (x100, always the training set's majority label; 0 for correlations): "
                 + ", ".join(f"{T.get(t, t)} {100 * v:.1f}" for t, v in meta["baselines"].items()) + ".", ""]
    text += ["## Results", "", "Metrics (x100): " + "; ".join(f"{T.get(t, t)} {bq.METRIC_NOTE.get(t, '')}" for t in p["tasks"])
             + ". Cells: mean ± sample std over seeds; *seeds*: finished seeds per task.", "", *main_table(data)]
    if meta.get("skipped"):
        text += ["Not run yet:", "", *[f"- {s}" for s in meta["skipped"]], ""]
    text += ["## Layer-wise designs against the best uniform method (paired by seed)", "", *paired_section(data),
             "## Layer maps: what `lamina suggest` chose", "", *layer_map_section(data),
             "## Cost: wall time and optimizer steps", "", *cost_table(data),
             "## Learning curves", "", *curve_table(data),
             "## Learning-rate sweep (training data only)", "", *sweep_section(data),
             "## Throughput and sizing", "", *throughput_section(data),
             f"{len(data['rows'])} runs; last updated {meta.get('last_updated', '')}.", ""]
    out = "\n".join(text)
    if plots_dir is not None:
        made = plots(data, Path(plots_dir))
        if made:
            out += "\n" + "\n".join(f"![{m.stem}]({m.name})" for m in made) + "\n"
    if path is not None:
        bq.write_file(path, out)
    return out


def plots(data: dict, folder: Path) -> list[Path]:
    """budget_vs_params.png (score vs trainable parameters without head) and budget_curves.png."""
    import plots as pl

    rows = main_rows(data)
    if not rows:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    p = data["meta"]["protocol"]
    view = {"meta": {**data["meta"], "protocol": {**p, "train_rows": "see budget.md", "epochs": p["epochs"]}},
            "rows": [{**r, "trainable_params": r.get("trainable_no_head") or r["trainable_params"]} for r in rows]}
    made = [pl.plot_quality_vs_params(view, folder / "budget_vs_params.png", xlabel="trainable parameters without head (log)")]
    plt = pl._plt()
    tasks = [t for t in p["tasks"] if any(r["task"] == t for r in rows)]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks), 4.0), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, t in zip(axes[0], tasks):
        for i, lab in enumerate(p["presets"]):
            curves = [r["curve"] for r in rows if r["label"] == lab and r["task"] == t]
            if not curves:
                continue
            k = min(len(c) for c in curves)
            xs = [curves[0][j]["step"] / curves[0][-1]["step"] for j in range(k)]
            ys = [100 * statistics.fmean(c[j]["score"] for c in curves) for j in range(k)]
            ax.plot(xs, ys, marker="o", color=cmap(i % 10), label=lab)
        ax.set_title(T.get(t, t))
        ax.set_xlabel("fraction of training")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("dev score x100 (mean over seeds)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "budget_curves.png", dpi=120)
    plt.close(fig)
    made.append(folder / "budget_curves.png")
    layer_map = layer_map_plot(data, folder / "budget_layer_maps.png")
    return made + ([layer_map] if layer_map else [])
