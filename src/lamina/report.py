"""Reports: markdown + HTML documents with tables and matplotlib PNG plots.

General pieces, reusable by any report: `markdown_table` / `html_table`, `pareto_front`,
`plot_score_vs_params` (scatter with the Pareto front: fewer parameters, higher score),
`plot_distributions` (box + strip plot per group of scores), `plot_curves` (step lines, e.g. a running
best), `plot_heatmap` (a grid of values in [0, 1]) and `Document` (headings, text, tables,
images, code; written as report.md and report.html side by side, the PNGs next to them).

The design-space search report (`lamina report`) is built from them in `lamina.search_report`.
"""

from __future__ import annotations

import html
import math
import random
from pathlib import Path
from typing import Sequence


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


def plot_curves(series: Sequence[dict], path: str | Path, title: str = "", xlabel: str = "", ylabel: str = "",
                steps: bool = True, hline: float | None = None, hline_label: str = "") -> Path:
    """Lines of `series` ({"label", "x", "y", optional "marker", "points": [(x, y, label)] drawn as stars});
    `steps`: post-step lines (a running best); `hline`: a horizontal reference line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, s in enumerate(series):
        color = s.get("color", f"C{i % 10}")
        if s["x"]:
            if steps:
                ax.step(s["x"], s["y"], where="post", label=s["label"], linewidth=1.5, color=color)
            else:
                ax.plot(s["x"], s["y"], label=s["label"], linewidth=1.5, color=color)
            ax.scatter(s["x"], s["y"], color=color, s=14, marker=s.get("marker", "o"))
        for x, y, text in s.get("points", ()):
            ax.scatter([x], [y], marker="*", s=160, color=color, edgecolors="black", zorder=5,
                       label=f"{s['label']}: {text}")
    if hline is not None:
        ax.axhline(hline, color="grey", linestyle="--", linewidth=1, label=hline_label or None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _save_figure(fig, path)


def plot_heatmap(values: Sequence[Sequence[float]], rows: Sequence[str], cols: Sequence[str], path: str | Path,
                 title: str = "", marks: Sequence[tuple[int, int]] = (), label: str = "") -> Path:
    """A rows x cols heatmap with each value written in its cell; `marks` (row, col) get a black frame."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.2 * len(cols) + 2.5, 0.45 * len(rows) + 1.6))
    image = ax.imshow(values, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    for i, row in enumerate(values):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.6 else "black")
    for i, j in marks:
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows)
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, label=label)
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


def _save_figure(fig, path) -> Path:
    """Lay out, write the PNG (making its folder), and free the figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
