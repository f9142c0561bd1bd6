"""Reports: markdown + HTML documents with tables and matplotlib PNG plots.

General pieces, reusable by any report: `markdown_table` / `html_table`, `pareto_front`,
`plot_score_vs_params` (scatter with the Pareto front: fewer parameters, higher score),
`plot_distributions` (box + strip plot per group of scores) and `Document` (headings, text, tables,
images, code; written as report.md and report.html side by side, the PNGs next to them).

The design-space search report (`lamina report`) is built from them: `load_search_records` reads search
output folders (search.json) or studies from a storage, `write_search_report` writes the document.
"""

from __future__ import annotations

import html
import json
import math
import random
from pathlib import Path
from typing import Sequence

from lamina.errors import LaminaError

# --------------------------------------------------------------------------- tables


def fmt(value, digits: int = 4) -> str:
    """Numbers for tables: ints with thousands separators, floats to `digits`, None as '-'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    def cell(v):
        return fmt(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def html_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# --------------------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pareto_front(xs: Sequence[float], ys: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats (x no larger and y no smaller, one strictly), by x."""
    order = sorted(range(len(xs)), key=lambda i: (xs[i], -ys[i]))
    front, best = [], -math.inf
    for i in order:
        if ys[i] > best:
            front.append(i)
            best = ys[i]
    return front


def plot_score_vs_params(series: Sequence[dict], path: str | Path, title: str = "",
                         xlabel: str = "trainable parameters", ylabel: str = "score") -> Path:
    """Scatter of `series` ({"label", "x", "y", optional "marker", "front": include in the Pareto front});
    the Pareto front over the points of every series with front=True is drawn as a step line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    fx, fy = [], []
    for s in series:
        if not s["x"]:
            continue
        ax.scatter(s["x"], s["y"], label=s["label"], marker=s.get("marker", "o"), alpha=0.8, s=36)
        if s.get("front", True):
            fx += list(s["x"])
            fy += list(s["y"])
    if fx:
        front = pareto_front(fx, fy)
        px, py = [fx[i] for i in front], [fy[i] for i in front]
        ax.step(px, py, where="post", color="black", linewidth=1.2, label="Pareto front")
        ax.scatter(px, py, facecolors="none", edgecolors="black", s=110, linewidths=1.4)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.ticklabel_format(axis="x", style="plain", useOffset=False)
    ax.legend(fontsize=8, loc="best")
    return _save_figure(fig, path)


def plot_distributions(groups: Sequence[tuple[str, Sequence[float]]], path: str | Path, title: str = "",
                       ylabel: str = "score", highlight: Sequence[str] = (), seed: int = 0) -> Path:
    """One box (quartiles, median) plus every value as a jittered dot per group; groups named in
    `highlight` (e.g. a stage's winner) are drawn in colour. Empty groups keep their slot."""
    plt = _pyplot()
    labels = [g[0] for g in groups]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(groups) + 2), 4.2))
    data = [list(v) for _, v in groups]
    filled = [i for i, v in enumerate(data) if v]
    if filled:
        boxes = ax.boxplot([data[i] for i in filled], positions=[i + 1 for i in filled], widths=0.55,
                           patch_artist=True, showfliers=False)
        for i, box in zip(filled, boxes["boxes"]):
            box.set_facecolor("#f4a261" if labels[i] in highlight else "#dde3ea")
    rng = random.Random(seed)
    for i, values in enumerate(data):
        xs = [i + 1 + rng.uniform(-0.12, 0.12) for _ in values]
        ax.scatter(xs, values, s=18, color="#264653", zorder=3)
        if values:
            ax.scatter([i + 1], [sum(values) / len(values)], marker="D", s=30, color="#e76f51", zorder=4)
    ax.set_xticks(range(1, len(labels) + 1))
    ax.set_xticklabels([f"{label}\nn={len(values)}" for label, values in zip(labels, data)], rotation=30 if len(labels) > 5 else 0, ha="right" if len(labels) > 5 else "center",
                       fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title + ("  (diamond: mean; coloured: winner)" if highlight else "  (diamond: mean)"), fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _save_figure(fig, path)


# --------------------------------------------------------------------------- documents


class Document:
    """Blocks written twice: report.md (GitHub markdown) and report.html (self-contained but the PNGs)."""

    CSS = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}"
           "table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid #ccc;padding:3px 8px;"
           "text-align:right}th{background:#f2f2f2}td:first-child{text-align:left}img{max-width:100%}"
           "pre{background:#f6f6f6;padding:1em;overflow-x:auto}")

    def __init__(self, title: str):
        self.title = title
        self.blocks: list[tuple[str, object]] = []

    def heading(self, text: str, level: int = 2):
        self.blocks.append(("heading", (level, text)))

    def text(self, text: str):
        self.blocks.append(("text", text))

    def table(self, headers, rows):
        self.blocks.append(("table", (list(headers), [list(r) for r in rows])))

    def image(self, path: Path, alt: str):
        self.blocks.append(("image", (Path(path).name, alt)))

    def code(self, text: str, lang: str = ""):
        self.blocks.append(("code", (text, lang)))

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, value in self.blocks:
            if kind == "heading":
                out += [f"{'#' * value[0]} {value[1]}", ""]
            elif kind == "text":
                out += [value, ""]
            elif kind == "table":
                out += [markdown_table(*value), ""]
            elif kind == "image":
                out += [f"![{value[1]}]({value[0]})", ""]
            else:
                out += [f"```{value[1]}", value[0], "```", ""]
        return "\n".join(out)

    def html(self) -> str:
        out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
               f"<style>{self.CSS}</style></head><body><h1>{html.escape(self.title)}</h1>"]
        for kind, value in self.blocks:
            if kind == "heading":
                out.append(f"<h{value[0]}>{html.escape(value[1])}</h{value[0]}>")
            elif kind == "text":
                out.append(f"<p>{_inline_html(value)}</p>")
            elif kind == "table":
                out.append(html_table(*value))
            elif kind == "image":
                out.append(f"<p><img src='{html.escape(value[0])}' alt='{html.escape(value[1])}'></p>")
            else:
                out.append(f"<pre><code>{html.escape(value[0])}</code></pre>")
        out.append("</body></html>")
        return "\n".join(out)

    def write(self, output: str | Path, stem: str = "report") -> list[Path]:
        from lamina.util import atomic_write_text

        output = Path(output)
        md, page = output / f"{stem}.md", output / f"{stem}.html"
        atomic_write_text(md, self.markdown())
        atomic_write_text(page, self.html())
        return [md, page]


def _inline_html(text: str) -> str:
    """`code` spans and **bold** of the markdown text, the rest escaped."""
    parts = html.escape(text).split("`")
    text = "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
    parts = text.split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


# --------------------------------------------------------------------------- the search report


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


def write_search_report(records: list[dict], output: str | Path, title: str = "lamina design-space search") -> list[Path]:
    """report.md, report.html and the PNGs (one distribution plot per run and stage, one score-vs-params
    plot per run, and one across runs when there are several)."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    doc = Document(title)
    written: list[Path] = []
    overview = []
    for i, rec in enumerate(records):
        name = _run_name(rec, i, records)
        c, comp = rec["config"], rec.get("compute", {})
        overview.append([name, ", ".join(c["tasks"]), c["space"]["budget"], c["trials_per_stage"], c["epochs"],
                         "yes" if c.get("prune") else "no", comp.get("trials"), comp.get("pruned"), comp.get("steps"),
                         comp.get("planned_steps"), f"{comp.get('saved_steps_percent', 0):.1f}", f"{comp.get('seconds', 0):.0f}",
                         rec["final"]["label"] if rec.get("final") else "(not finished)"])
    doc.heading("Runs")
    doc.table(["run", "tasks", "budget", "trials/stage", "epochs", "pruning", "trials", "pruned", "steps",
               "planned steps", "steps saved %", "train s", "final design"], overview)
    all_series = []
    for i, rec in enumerate(records):
        name = _run_name(rec, i, records)
        slug = "-".join("".join(ch if ch.isalnum() else " " for ch in name).split()) or f"run{i + 1}"
        c = rec["config"]
        doc.heading(f"Run {name}")
        doc.text(f"Model `{c['model']}`, tasks {', '.join(c['tasks'])}, budget {c['space']['budget']}, "
                 f"{c['trials_per_stage']} trials per stage, {c['epochs']:g} epoch(s), train limit "
                 f"{fmt(c.get('train_limit'))}, eval limit {fmt(c.get('eval_limit'))}, max length {c['max_length']}, "
                 f"pruning {'on (successive halving, η=' + str(c['reduction_factor']) + ')' if c.get('prune') else 'off'}. "
                 f"Study `{rec['study']}` in `{rec.get('storage', '')}`.")
        series = []
        for stage in rec["stages"]:
            doc.heading(f"Stage {stage['index']}: {stage['component']} ({stage['analysis']} analysis)", 3)
            fixed = ", ".join(f"{k} = {v}" for k, v in stage.get("fixed_labels", stage["fixed"]).items()) or "nothing yet"
            doc.text(f"Fixed before this stage: {fixed}. Winner: **{stage['winner_label'] or '(stage not finished)'}**.")
            if stage["stats"]:
                doc.table(*_stats_rows(stage))
                groups, winners = _stage_groups(stage)
                png = plot_distributions(groups, output / f"{slug}-stage{stage['index']}-{stage['component']}.png",
                                         title=f"{name}: stage {stage['index']} {stage['component']}", highlight=winners)
                written.append(png)
                doc.image(png, f"score distribution per choice, stage {stage['index']}")
            for note in stage.get("notes", []):
                doc.text(f"Note: {note}")
            rows = [[t["trial"], t["candidate"], t["state"] + ("" if t["counted"] else " (not counted)"), t["label"],
                     t["value"] if t["value"] is not None else _last(t), t["trainable"], t["steps"],
                     f"{t['seconds']:.1f}" if t["seconds"] is not None else None]
                    for t in stage["trials"]]
            doc.table(["trial", "candidate", "state", "design", "score", "trainable", "steps", "seconds"], rows)
            done = [t for t in stage["trials"] if t["counted"] and t["trainable"] is not None]
            for state, marker in (("COMPLETE", "o"), ("PRUNED", "x")):
                pts = [t for t in done if t["state"] == state and (t["value"] if state == "COMPLETE" else _last(t)) is not None]
                series.append({"label": f"stage {stage['index']} {stage['component']}" + (" (pruned)" if state == "PRUNED" else ""),
                               "x": [t["trainable"] for t in pts], "marker": marker, "front": state == "COMPLETE",
                               "y": [t["value"] if state == "COMPLETE" else _last(t) for t in pts]})
        png = plot_score_vs_params(series, output / f"{slug}-score-vs-params.png",
                                   title=f"{name}: score vs trainable parameters (with head)")
        written.append(png)
        doc.heading("Score vs trainable parameters", 3)
        doc.text("Every counted trial (x: pruned, scored at the step it stopped). All designs share one budget, so "
                 "they differ by the solver's rounding (within its tolerance) and by the head; the black step line is "
                 "the Pareto front: the designs no other design beats on both axes (fewer parameters, higher score).")
        doc.image(png, "score vs trainable parameters")
        all_series.append({"label": name, "marker": "o", "front": True,
                           "x": [x for s in series if s["front"] for x in s["x"]],
                           "y": [y for s in series if s["front"] for y in s["y"]]})
        if rec.get("final"):
            doc.heading("Final design", 3)
            doc.text(f"{rec['final']['label']} (budget report: {json.dumps(rec['final'].get('budget'))})")
            import yaml

            doc.code(yaml.safe_dump(rec["final"].get("design", rec["final"]["point"]), sort_keys=False), "yaml")
    if len(records) > 1:
        png = plot_score_vs_params(all_series, output / "all-runs-score-vs-params.png",
                                   title="all runs: score vs trainable parameters")
        written.append(png)
        doc.heading("All runs")
        doc.image(png, "score vs trainable parameters, all runs")
    return doc.write(output) + written


def _save_figure(fig, path) -> Path:
    """Lay out, write the PNG (making its folder), and free the figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
