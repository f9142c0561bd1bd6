#!/usr/bin/env python
"""Plots for docs/benchmarks (matplotlib, PNG):

* `quality_vs_params.png`: task score vs trainable parameters (log x), one panel per task, mean ± std over
  seeds (from quality.json);
* `layer_map.png`: which method trains in which layer, per preset, on MiniLM (6 layers) — a grid
  (presets x layers, plus the input row for soft prompts), letters per method, colours per combination;
* `unipelt_gates.png`: UniPELT gate values per layer after training (adapter / prefix / LoRA gates, mean
  over the dev set with `lamina.collect_gates`, then over seeds), per task (from quality.json);
* `lowres.png`: low-resource test score vs K per preset (from lowres.json).

    .venv/bin/python bench/plots.py [--quality docs/benchmarks/quality.json] [--lowres docs/benchmarks/lowres.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_quality as bq  # noqa: E402

OUT = bq.ROOT / "docs" / "benchmarks"
LETTER = {"lora": "L", "bitfit": "B", "adapter": "A", "prefix": "P", "ln": "N", "full": "F", "prompt": "T"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _by(rows: list[dict], *keys) -> dict:
    out: dict = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


# -------------------------------------------------------------------------------- score vs parameters


def plot_quality_vs_params(quality: dict, path: Path, xlabel: str = "trainable parameters (log)") -> Path:
    plt = _plt()
    p = quality["meta"]["protocol"]
    tasks = [t for t in p["tasks"] if any(r["task"] == t for r in quality["rows"])]
    groups = _by(quality["rows"], "label", "task")
    labels = list(p["presets"])
    cmap = plt.get_cmap("tab20")
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 4.4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for i, label in enumerate(labels):
            rs = groups.get((label, task))
            if not rs:
                continue
            scores = [100 * r["main_score"] for r in rs]
            mean = statistics.fmean(scores)
            std = statistics.stdev(scores) if len(scores) > 1 else 0.0
            x = rs[0]["trainable_params"]
            ax.errorbar([x], [mean], yerr=[std], fmt="o", color=cmap(i % 20), capsize=3, label=label)
            ax.annotate(label, (x, mean), textcoords="offset points", xytext=(4, 3), fontsize=7)
        floor = quality["meta"].get("baselines", {}).get(task)
        if floor:
            ax.axhline(100 * floor, color="grey", linestyle=":", linewidth=1, label="majority label")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{bq.TASK_TITLE.get(task, task)} {bq.METRIC_NOTE.get(task, '')} (x100)")
        ax.set_title(bq.TASK_TITLE.get(task, task))
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"MiniLM, {p['train_rows']} train rows, epochs {bq.epochs_text(p['epochs'])}; mean ± std over seeds",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------ layer map


def preset_layer_map(presets: dict[str, str], model_path: str | None = None) -> tuple[int, dict[str, dict]]:
    """{label: {"layers": [letters per layer], "prompt": bool, "detail": [text per layer]}} for MiniLM,
    from the resolved design (`lamina.apply(..., dry_run=True)`, so s4's budget is solved)."""
    import torch
    import transformers as T

    import lamina

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    T.logging.set_verbosity_error()
    path = model_path or bq.default_model()
    cfg = T.AutoConfig.from_pretrained(path, num_labels=2)
    with torch.device("meta"):
        model = T.AutoModelForSequenceClassification.from_config(cfg)
    L = cfg.num_hidden_layers
    out = {}
    for label, preset in presets.items():
        report = lamina.apply(model, preset, dry_run=True)
        design = report.design
        letters, detail = [""] * L, [""] * L
        if design.full:
            letters = ["F"] * L
            detail = ["all weights"] * L
        for g in design.groups:
            for layer in range(g.first, g.last + 1):
                parts, info = [], []
                for s in g.strategies:
                    letter = LETTER.get(s.method, "?")
                    if s.method == "adapter" and s.placement != "pfeiffer":
                        letter = "A" + s.placement[0]  # Ah = Houlsby, Ap = parallel
                    if getattr(s, "gated", False):
                        letter = letter.lower()  # gated (UniPELT) methods in lower case
                    parts.append(letter)
                    size = {"lora": f"r{getattr(s, 'r', '')}", "adapter": f"b{getattr(s, 'bottleneck', '') or ''}",
                            "prefix": f"len{getattr(s, 'length', '')}"}.get(s.method, "")
                    info.append(f"{letter}{size}")
                letters[layer] = "".join(sorted(parts, key=str.upper))
                detail[layer] = " ".join(info)
        out[label] = {"layers": letters, "prompt": design.prompt is not None, "detail": detail,
                      "trainable": report.trainable}
    return L, out


def plot_layer_map(presets: dict[str, str], path: Path, model_path: str | None = None) -> Path:
    plt = _plt()
    from matplotlib.colors import to_rgba

    L, maps = preset_layer_map(presets, model_path)
    labels = list(maps)
    cols = ["input"] + [str(i) for i in range(L)]
    combos = sorted({c for m in maps.values() for c in m["layers"] if c} | ({"T"} if any(m["prompt"] for m in maps.values()) else set()))
    cmap = plt.get_cmap("tab20")
    colour = {c: cmap(i % 20) for i, c in enumerate(combos)}
    fig, ax = plt.subplots(figsize=(1.2 * len(cols) + 2.5, 0.45 * len(labels) + 1.6))
    for y, label in enumerate(labels):
        m = maps[label]
        cells = [("T" if m["prompt"] else "")] + m["layers"]
        for x, text in enumerate(cells):
            face = colour[text] if text else to_rgba("white")
            ax.add_patch(plt.Rectangle((x, y), 1, 1, facecolor=face, edgecolor="grey", alpha=0.55 if text else 1))
            if text:
                ax.text(x + 0.5, y + 0.5, text, ha="center", va="center", fontsize=9, fontweight="bold")
    ax.set_xlim(0, len(cols))
    ax.set_ylim(len(labels), 0)
    ax.set_xticks([i + 0.5 for i in range(len(cols))], cols)
    ax.set_yticks([i + 0.5 for i in range(len(labels))], [f"{l}  ({bq.fmt_params(maps[l]['trainable'])})" for l in labels])
    ax.set_xlabel("layer (MiniLM, 0 = first); 'input' = soft prompt tokens")
    ax.set_title("Where each preset trains: F full, L LoRA, B BitFit, A Pfeiffer adapter, Ah Houlsby adapter,\n"
                 "P prefix, T prompt; lower case = UniPELT-gated; empty = frozen (head always trains)", fontsize=9)
    ax.tick_params(length=0)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------ gates


def plot_gates(quality: dict, path: Path) -> Path | None:
    plt = _plt()
    rows = [r for r in quality["rows"] if r.get("gates")]
    if not rows:
        return None
    tasks = [t for t in quality["meta"]["protocol"]["tasks"] if any(r["task"] == t for r in rows)]
    labels = [l for l in quality["meta"]["protocol"]["presets"] if any(r["label"] == l for r in rows)]
    styles = {"adapter": ("tab:blue", "o"), "prefix": ("tab:orange", "s"), "lora": ("tab:green", "^")}
    dashes = ["-", "--", ":"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False, sharey=True)
    for ax, task in zip(axes[0], tasks):
        for li, label in enumerate(labels):
            rs = [r for r in rows if r["task"] == task and r["label"] == label]
            if not rs:
                continue
            layers = sorted({int(k) for r in rs for k in r["gates"]})
            for method, (colour, marker) in styles.items():
                ys = []
                for layer in layers:
                    vals = [r["gates"][str(layer)][method] for r in rs if method in r["gates"].get(str(layer), {})]
                    ys.append(statistics.fmean(vals) if vals else float("nan"))
                ax.plot(layers, ys, dashes[li % 3], color=colour, marker=marker,
                        label=f"{label}: {method} gate (n={len(rs)})")
        ax.set_title(bq.TASK_TITLE.get(task, task))
        ax.set_xlabel("layer")
        ax.set_ylim(0, 1)
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("mean gate value on the dev set")
    handles = {}
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab.split(" (n=")[0], h)
    fig.legend(list(handles.values()), list(handles), fontsize=7, loc="lower center", ncol=3, frameon=False)
    fig.subplots_adjust(bottom=0.3)
    fig.suptitle("UniPELT gates after training (sigmoid, mean over dev examples, then over seeds)", fontsize=10)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------- lowres


def plot_lowres(lowres: dict, path: Path) -> Path | None:
    plt = _plt()
    rows = lowres["rows"]
    if not rows:
        return None
    tasks = [t for t in lowres["meta"]["protocol"]["tasks"] if any(r["task"] == t for r in rows)]
    labels = [l for l in lowres["meta"]["protocol"]["presets"] if any(r["label"] == l for r in rows)]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for label in labels:
            ks = sorted({r["k"] for r in rows if r["task"] == task and r["label"] == label})
            means, stds = [], []
            for k in ks:
                s = [100 * r["main_score"] for r in rows if r["task"] == task and r["label"] == label and r["k"] == k]
                means.append(statistics.fmean(s))
                stds.append(statistics.stdev(s) if len(s) > 1 else 0.0)
            ax.errorbar(ks, means, yerr=stds, marker="o", capsize=3, label=label)
        ax.set_xscale("log")
        all_ks = sorted({r["k"] for r in rows})
        ax.set_xticks(all_ks, [str(k) for k in all_ks])
        ax.minorticks_off()
        ax.set_xlabel("K training examples")
        ax.set_ylabel(f"test score (x100): {bq.METRIC_NOTE.get(task, '')}")
        ax.set_title(bq.TASK_TITLE.get(task, task))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Low-resource (UniPELT protocol): checkpoint chosen on 1,000 other train rows, scored on the dev set",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def main(argv=None) -> list[Path]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quality", type=Path, default=OUT / "quality.json")
    ap.add_argument("--lowres", type=Path, default=OUT / "lowres.json")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--model", default=None, help="model folder for the layer map (default: the MiniLM wheel)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    made = []
    presets = {label: preset for label, (preset, _lr) in bq.PRESETS.items()}
    if args.quality.is_file():
        quality = json.loads(args.quality.read_text())
        presets = {label: v[0] for label, v in quality["meta"]["protocol"]["presets"].items()}
        if quality["rows"]:
            made.append(plot_quality_vs_params(quality, args.out / "quality_vs_params.png"))
        made.append(plot_gates(quality, args.out / "unipelt_gates.png"))
    made.append(plot_layer_map(presets, args.out / "layer_map.png", args.model))
    if args.lowres.is_file():
        made.append(plot_lowres(json.loads(args.lowres.read_text()), args.out / "lowres.png"))
    made = [m for m in made if m is not None]
    for m in made:
        print(m)
    return made


if __name__ == "__main__":
    main()
