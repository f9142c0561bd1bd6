"""The search report (`lamina report`): per run the settings, the compute ledger (what the search cost in
full-training equivalents) with its anytime plot (best score so far vs compute spent), each phase (a greedy
stage's score distributions per choice, the joint search's trials and warm starts, the one-shot search's
learned gates and how the budget penalty moved the expected parameter count), every trial, score vs
trainable parameters, the final design and its training; across runs, the anytime curves side by side.

`load_search_records` reads search output folders (search.json) or studies from a storage;
`write_search_report` writes report.md, report.html and the PNGs (general pieces: `lamina.report`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

from lamina.errors import LaminaError
from lamina.report import (
    Document, fmt, plot_curves, plot_distributions, plot_heatmap, plot_score_vs_params,
)

def load_search_records(inputs: Sequence[str], storage: str | None = None) -> list[dict]:
    """search.json of each output folder / file, or the record of each study name in `storage`."""
    records = []
    for item in inputs:
        path = Path(item)
        if path.is_dir() and (path / "search.json").is_file():
            path = path / "search.json"
        if path.is_file():
            from lamina.checks import read_json
            from lamina.search.record_schema import check_record

            record = read_json(path, "search record")
            check_record(record, path)
            record.setdefault("source", str(path.parent))
            records.append(record)
        elif storage:
            from lamina.search import build_record
            from lamina.search.store import open_storage, redact

            url = storage if "://" in storage else f"sqlite:///{Path(storage).expanduser().resolve()}"
            database = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None
            if database is not None and database not in ("", ":memory:") and not Path(database).is_file():
                raise LaminaError(f"--storage {storage}: no such database file (a report reads an existing search; "
                                  "opening it would create an empty one)")
            record = build_record(open_storage(url), item, storage_label=redact(url))
            record["source"] = f"{redact(url)} :: {item}"
            record["name"] = item
            records.append(record)
        elif path.exists():
            raise LaminaError(f"{path}: no search.json here (give a `lamina search` output folder)")
        else:
            raise LaminaError(f"{item}: no such folder or file (for a study name, give --storage)")
    if not records:
        raise LaminaError("nothing to report: give at least one search output folder or study")
    return records


def _run_name(record: dict, i: int, records: list[dict]) -> str:
    names = [r.get("name") or Path(r.get("source", r["study"])).name or r["study"] for r in records]
    name = names[i]
    return name if names.count(name) == 1 else f"{name} ({i + 1})"


def _stage_groups(stage: dict) -> tuple[list[tuple[str, list[float]]], list[str]]:
    """Box-plot groups of a stage: per choice, or per item with/without (marginal analysis)."""
    groups, winners = [], []
    scores = {t["trial"]: t["value"] if t["value"] is not None else _last(t) for t in stage["trials"] if t["counted"]}
    for row in stage["stats"]:
        if "choice" in row:
            groups.append((row["choice"], [scores[n] for n in row["trials"] if scores.get(n) is not None]))
            if row.get("winner"):
                winners.append(row["choice"])
        else:
            for side in ("with", "without"):
                label = f"{row['item']} {'+' if side == 'with' else '-'}"
                groups.append((label, [scores[n] for n in row[side]["trials"] if scores.get(n) is not None]))
            if row.get("winner"):
                winners.append(f"{row['item']} +")
    return groups, winners


def _last(trial: dict):
    inter = trial.get("intermediate") or {}
    return inter[max(inter, key=int)] if inter else None


def _stats_rows(stage: dict) -> tuple[list[str], list[list]]:
    if stage["analysis"] == "choice":
        headers = ["choice", "n", "mean", "median", "std", "min", "max", "pruned", "failed", "winner"]
        return headers, [[r["choice"], r["n"], r["mean"], r["median"], r["std"], r["min"], r["max"], r["pruned"],
                          r["failed"], bool(r.get("winner"))] for r in stage["stats"]]
    headers = ["item", "n with", "mean with", "median with", "std with", "n without", "mean without",
               "median without", "difference", "kept"]
    return headers, [[r["item"], r["with"]["n"], r["with"]["mean"], r["with"]["median"], r["with"]["std"],
                      r["without"]["n"], r["without"]["mean"], r["without"]["median"],
                      r["difference"] if math.isfinite(r["difference"]) else None, bool(r.get("winner"))]
                     for r in stage["stats"]]


def _slug(name: str, i: int) -> str:
    return "-".join("".join(ch if ch.isalnum() else " " for ch in name).split()) or f"run{i + 1}"


def _equivalents(rec: dict, measure: str = "cpu_s"):
    return ((rec.get("ledger") or {}).get("equivalents") or {}).get(measure)


def _final_score(rec: dict):
    return ((rec.get("final") or {}).get("training") or {}).get("value")


def _settings(rec: dict) -> str:
    c = rec["config"]
    strategy = rec.get("strategy", c.get("strategy", "greedy"))
    how = {"greedy": f"{c['trials_per_stage']} trials per stage",
           "joint": f"{c.get('trials')} trials, TPE (multivariate), warm start {'on' if c.get('warm_start', True) else 'off'}",
           "one-shot": f"one supernet, budget penalty λ={c.get('penalty')}, gate learning rate "
                       f"{c.get('alpha_lr') or '4 / steps'}"}[strategy]
    pruning = (f"on ({c.get('pruner', 'asha')}, η={c['reduction_factor']})" if c.get("prune") else "off")
    return (f"Strategy **{strategy}**: {how}. Model `{c['model']}`, tasks {', '.join(c['tasks'])}, budget "
            f"{c['space']['budget']}, {c['epochs']:g} epoch(s) per training, train limit {fmt(c.get('train_limit'))}, "
            f"eval limit {fmt(c.get('eval_limit'))}, max length {c['max_length']}, batch {c['batch_size']}, "
            f"learning rate {fmt(c.get('lr'))}, training seed {c.get('seed')}, space seed {c['space'].get('seed')}, "
            f"pruning {pruning if strategy != 'one-shot' else 'n/a'}. Study `{rec['study']}` in `{rec.get('storage', '')}`.")


def _ledger_section(doc: Document, rec: dict, name: str, slug: str, output: Path) -> Path | None:
    ledger = rec.get("ledger")
    if not ledger:
        return None
    doc.heading("Compute ledger", 3)
    headers = ["phase", "trials", "killed", "optimizer steps", "examples", "eval examples", "CPU s", "wall s"]
    rows = [[p["phase"], p["trials"], p["killed"], p["steps"], p["examples"], p["eval_examples"], _s(p["cpu_s"]),
             _s(p["wall_s"])] for p in ledger["phases"]]
    t = ledger["total"]
    rows.append(["**search total**", t["trials"], t["killed"], t["steps"], t["examples"], t["eval_examples"],
                 _s(t["cpu_s"]), _s(t["wall_s"])])
    ref, eq = ledger.get("reference"), ledger.get("equivalents") or {}
    if ref:
        what = "one training of the final design" + (" (= its search trial)" if ref.get("reused") else "")
        rows.append([what, 1, 0, ref["steps"], ref["examples"], ref["eval_examples"], _s(ref["cpu_s"]), _s(ref["wall_s"])])
        rows.append(["**full-training equivalents**", None, None, _x(eq.get("steps")), _x(eq.get("examples")), None,
                     _x(eq.get("cpu_s")), _x(eq.get("wall_s"))])
    doc.table(headers, rows)
    if ref:
        doc.text(f"The search cost **{fmt(eq.get('cpu_s'), 2)} full-training equivalents** in CPU time "
                 f"({fmt(eq.get('steps'), 2)} in optimizer steps, {fmt(eq.get('wall_s'), 2)} in wall time). CPU seconds "
                 "are the process time of each trial's worker; steps and examples are exact; wall time depends on "
                 "the machine's load." + (" Killed attempts record nothing: the totals are lower bounds."
                                          if t["killed"] else ""))
    points = [p for p in ledger.get("anytime", []) if p.get("cpu_equivalents") is not None]
    if not points:
        return None
    series = [_anytime_series(name, points)]
    png = plot_curves(series, output / f"{slug}-anytime.png", title=f"{name}: best score so far vs compute",
                      xlabel="compute spent (full-training equivalents, CPU time)", ylabel="best complete trial score")
    doc.text("Anytime: the best complete trial's score after each finished trial, against the compute spent so far; "
             "the star is the final design's score from its own training, at the search's cost plus that training.")
    doc.image(png, "anytime: best score so far vs compute")
    return png


def _s(seconds) -> str | None:
    return None if seconds is None else f"{seconds:,.1f}"


def _x(value) -> str | None:
    return None if value is None else f"{value:.2f}"


def _anytime_series(label: str, points: list[dict]) -> dict:
    trials = [p for p in points if p["kind"] == "trial" and p["best"] is not None]
    final = [p for p in points if p["kind"] == "final" and p["best"] is not None]
    return {"label": label, "x": [p["cpu_equivalents"] for p in trials], "y": [p["best"] for p in trials],
            "points": [(p["cpu_equivalents"], p["best"], "final design") for p in final]}


def _supernet_section(doc: Document, stage: dict, name: str, slug: str, output: Path) -> list[Path]:
    info = stage.get("supernet")
    if not info:
        return []
    gates = info["gates"]
    layers = sorted({g["layer"] for g in gates})
    methods = list(dict.fromkeys(g["method"] for g in gates))
    value = {(g["layer"], g["method"]): g["gate"] for g in gates}
    kept = {tuple(c) for c in info["pruned"]["kept"]}
    grid = [[value.get((l, m), 0.0) for m in methods] for l in layers]
    marks = [(i, j) for i, l in enumerate(layers) for j, m in enumerate(methods) if (l, m) in kept]
    heat = plot_heatmap(grid, [f"layer {l}" for l in layers], methods, output / f"{slug}-gates.png",
                        title=f"{name}: learned gates σ(α) (framed: kept)", marks=marks, label="gate")
    steps = list(range(len(info["expected_trajectory"])))
    curve = plot_curves([{"label": "expected / budget", "x": steps, "y": info["expected_trajectory"]}],
                        output / f"{slug}-expected.png", title=f"{name}: expected trainable parameters / budget",
                        xlabel="optimizer step", ylabel="Σ σ(α)·cost / budget", steps=False, hline=1.0,
                        hline_label="budget")
    budget = info["pruned"].get("budget") or {}
    doc.text(f"Supernet: {len(gates)} cells, {info['steps']} steps, gate learning rate {fmt(info.get('alpha_lr'))}, "
             f"penalty λ={fmt(info.get('penalty'))}; expected parameters / budget went from "
             f"{info['expected_start']:.3f} to {info['expected_end']:.3f}; supernet dev score {info['score']:.4f} "
             f"(recorded, not used to choose). Pruned to **{info['pruned']['label']}**: {len(kept)} cells kept, "
             f"budget {fmt(budget.get('achieved'))} of {fmt(budget.get('target'))} (tolerance {fmt(budget.get('tolerance'))}).")
    for note in info["pruned"].get("notes", []):
        doc.text(f"Note: {note}")
    doc.image(heat, "learned gates per layer and method")
    doc.image(curve, "expected parameter count during the supernet training")
    return [heat, curve]


def _warm_start_text(doc: Document, stage: dict) -> None:
    info = stage.get("warm_start")
    if not info:
        return
    probe = info.get("probe") or {}
    points = len(info.get("points", []))
    text = f"Warm start: {points} design(s) from `lamina suggest` enqueued first"
    if probe:
        text += f" (probe: {probe.get('steps')} batches, {probe.get('examples')} examples, {fmt(probe.get('cpu_s'), 1)} CPU s)"
    doc.text(text + ".")
    for note in info.get("notes", []):
        doc.text(f"Note: {note}")


def write_search_report(records: list[dict], output: str | Path, title: str = "lamina design-space search") -> list[Path]:
    """report.md, report.html and the PNGs: per run the ledger and anytime plot, each phase's plots (stage
    distributions, supernet gates), score vs trainable parameters; across runs, anytime curves and scores."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    doc = Document(title)
    written: list[Path] = []
    overview = []
    for i, rec in enumerate(records):
        name = _run_name(rec, i, records)
        c, comp = rec["config"], rec.get("compute", {})
        score = _final_score(rec)
        overview.append([name, rec.get("strategy", c.get("strategy", "greedy")), ", ".join(c["tasks"]), c["space"]["budget"],
                         f"{c['epochs']:g}", "yes" if c.get("prune") else "no", comp.get("trials"), comp.get("pruned"),
                         comp.get("steps"), f"{comp.get('seconds', 0):.0f}", _x(_equivalents(rec)),
                         _x(_equivalents(rec, "steps")), f"{score:.4f}" if score is not None else None,
                         rec["final"]["label"] if rec.get("final") else "(not finished)"])
    doc.heading("Runs")
    doc.table(["run", "strategy", "tasks", "budget", "epochs", "pruning", "trials", "pruned", "steps", "train s",
               "cost (trainings, CPU)", "cost (trainings, steps)", "final design score", "final design"], overview)
    all_series, anytime = [], []
    for i, rec in enumerate(records):
        name = _run_name(rec, i, records)
        slug = _slug(name, i)
        doc.heading(f"Run {name}")
        doc.text(_settings(rec))
        png = _ledger_section(doc, rec, name, slug, output)
        if png:
            written.append(png)
            points = [p for p in rec["ledger"]["anytime"] if p.get("cpu_equivalents") is not None]
            anytime.append(_anytime_series(name, points))
        series = []
        for stage in rec["stages"]:
            greedy = stage["analysis"] in ("choice", "marginal")
            heading = (f"Stage {stage['index']}: {stage['component']} ({stage['analysis']} analysis)" if greedy
                       else f"{stage['component'].capitalize()} ({stage['analysis']})")
            doc.heading(heading, 3)
            if greedy:
                fixed = ", ".join(f"{k} = {v}" for k, v in stage.get("fixed_labels", stage["fixed"]).items()) or "nothing yet"
                doc.text(f"Fixed before this stage: {fixed}. Winner: **{stage['winner_label'] or '(stage not finished)'}**.")
            else:
                doc.text(f"Result: **{stage['winner_label'] or '(not finished)'}**.")
            _warm_start_text(doc, stage)
            written += _supernet_section(doc, stage, name, slug, output)
            if stage["stats"]:
                doc.table(*_stats_rows(stage))
                groups, winners = _stage_groups(stage)
                png = plot_distributions(groups, output / f"{slug}-stage{stage['index']}-{stage['component']}.png",
                                         title=f"{name}: stage {stage['index']} {stage['component']}", highlight=winners)
                written.append(png)
                doc.image(png, f"score distribution per choice, stage {stage['index']}")
            for note in stage.get("notes", []):
                doc.text(f"Note: {note}")
            rows = [[t["trial"], t["candidate"], t["state"] + ("" if t["counted"] else " (not counted)"),
                     t["label"] + (" (warm start)" if t.get("warm_start") else "") if t["label"] else t.get("error"),
                     t["value"] if t["value"] is not None else _last(t), t["trainable"], t["steps"],
                     f"{t['cpu_s']:.1f}" if t.get("cpu_s") is not None else None,
                     f"{t['seconds']:.1f}" if t["seconds"] is not None else None]
                    for t in stage["trials"]]
            doc.table(["trial", "candidate", "state", "design", "score", "trainable", "steps", "CPU s", "wall s"], rows)
            done = [t for t in stage["trials"] if t["counted"] and t["trainable"] is not None and t.get("kind", "design") == "design"]
            for state, marker in (("COMPLETE", "o"), ("PRUNED", "x")):
                pts = [t for t in done if t["state"] == state and (t["value"] if state == "COMPLETE" else _last(t)) is not None]
                series.append({"label": f"{stage['component']}" + (" (pruned)" if state == "PRUNED" else ""),
                               "x": [t["trainable"] for t in pts], "marker": marker, "front": state == "COMPLETE",
                               "y": [t["value"] if state == "COMPLETE" else _last(t) for t in pts]})
        training = (rec.get("final") or {}).get("training")
        if training and training.get("trainable") is not None and training.get("value") is not None:
            series.append({"label": "final design (trained once)", "x": [training["trainable"]], "y": [training["value"]],
                           "marker": "*", "front": False})
        if any(s["x"] for s in series):
            png = plot_score_vs_params(series, output / f"{slug}-score-vs-params.png",
                                       title=f"{name}: score vs trainable parameters (with head)")
            written.append(png)
            doc.heading("Score vs trainable parameters", 3)
            doc.text("Every counted trial of a design (x: pruned, scored at the step it stopped). All designs share one "
                     "budget, so they differ by the solver's rounding (within its tolerance) and by the head; the black "
                     "step line is the Pareto front: the designs no other design beats on both axes.")
            doc.image(png, "score vs trainable parameters")
        all_series.append({"label": name, "marker": "o", "front": True,
                           "x": [x for s in series if s["front"] for x in s["x"]],
                           "y": [y for s in series if s["front"] for y in s["y"]]})
        if rec.get("final"):
            _final_section(doc, rec)
    if len(records) > 1:
        doc.heading("All runs")
        if anytime:
            png = plot_curves(anytime, output / "all-runs-anytime.png", title="all runs: best score so far vs compute",
                              xlabel="compute spent (full-training equivalents, CPU time)", ylabel="best complete trial score")
            written.append(png)
            doc.image(png, "anytime, all runs")
        if any(s["x"] for s in all_series):
            png = plot_score_vs_params(all_series, output / "all-runs-score-vs-params.png",
                                       title="all runs: score vs trainable parameters")
            written.append(png)
            doc.image(png, "score vs trainable parameters, all runs")
    return doc.write(output) + written


def _final_section(doc: Document, rec: dict) -> None:
    import yaml

    final = rec["final"]
    doc.heading("Final design", 3)
    training = final.get("training") or {}
    trained = ""
    if training.get("value") is not None:
        trained = (f" Trained once under the search's settings{' (its own search trial)' if training.get('reused') else ''}: "
                   f"score **{training['value']:.4f}**, {fmt(training.get('trainable'))} trainable parameters.")
    doc.text(f"{final['label']} (budget report: {json.dumps(final.get('budget'))}).{trained}")
    doc.code(yaml.safe_dump(final.get("design", final.get("point")), sort_keys=False), "yaml")
