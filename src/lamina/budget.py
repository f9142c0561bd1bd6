"""Budgets: turn a target count (or % of the base model) plus an allocation into integer sizes.

Counting is never re-derived by hand: each sized strategy's cost is measured by building the design
on the meta device at size 1 and size 2 (costs are linear in rank / bottleneck / prefix length), so
the solver always agrees with what `apply` reports. The budget counts trainable parameters without
the task head (the head is the same for every design).

Solver: fixed costs (BitFit, LayerNorm, gates, prompt, size-independent parts) come off the target;
the rest is spread over the tuned layers by the allocation (uniform: equal per layer; increasing /
decreasing: in proportion to the layer's rank 1..n or n..1), each group's share is split equally among
its sized strategies and rounded; then single +/-1 size steps are taken while they bring the total
closer. Tolerance: |achieved - target| <= half the largest per-unit cost of any sized strategy.
"""

from __future__ import annotations

from pathlib import Path

from lamina import presets
from lamina.arch import ModelMap, count_params, head_params, hidden_size
from lamina.build import dry_rows, group_layers
from lamina.checks import is_design_file
from lamina.design import Design, DesignError
from lamina.methods import METHODS


def load_design(spec, num_layers: int, hidden: int) -> Design:
    """A Design from a Design, dict, YAML/JSON file, or preset string."""
    if isinstance(spec, Design):
        return spec
    if isinstance(spec, dict):
        return Design.from_dict(spec)
    if is_design_file(spec):
        return Design.from_file(spec)
    if isinstance(spec, str):
        return presets.build(spec, num_layers, hidden)
    raise DesignError(f"cannot read a design from {type(spec).__name__}")


def resolve(spec, model, mmap: ModelMap) -> tuple[Design, dict | None]:
    design = load_design(spec, mmap.num_layers, hidden_size(model))
    if design.budget is None:
        return design, None
    return solve(design, model, mmap)


def _with_sizes(design: Design, sizes: dict[tuple[int, int], int]) -> Design:
    groups = []
    for g, group in enumerate(design.groups):
        strategies = []
        for s_idx, s in enumerate(group.strategies):
            if (g, s_idx) in sizes:
                s = METHODS[s.method].resized(s, sizes[(g, s_idx)])
            strategies.append(s)
        groups.append(group.model_copy(update={"strategies": tuple(strategies)}))
    return design.model_copy(update={"groups": tuple(groups)})


def _unsized(design: Design) -> list[tuple[int, int]]:
    return [
        (g, i) for g, group in enumerate(design.groups) for i, s in enumerate(group.strategies)
        if METHODS[s.method].size(s) is None
    ]


def _cost(design: Design, model, mmap: ModelMap) -> dict[tuple[int, str], int]:
    return {(r.group, r.method): r.trainable for r in dry_rows(design, model, mmap) if r.method != "head"}


def solve(design: Design, model, mmap: ModelMap) -> tuple[Design, dict]:
    base = count_params(model) - head_params(model, mmap)
    target = design.budget.resolve(base)
    sized = _unsized(design)
    if sized:
        at1 = _cost(_with_sizes(design, {k: 1 for k in sized}), model, mmap)
        at2 = _cost(_with_sizes(design, {k: 2 for k in sized}), model, mmap)
        row = {k: (str(k[0]), design.groups[k[0]].strategies[k[1]].method) for k in sized}
        unit = {k: at2[row[k]] - at1[row[k]] for k in sized}
        minimum = sum(at1.values())
        if target < minimum:
            raise DesignError(f"budget.target: {target:,} is below this design's smallest size ({minimum:,} at size 1)")
        fixed = minimum - sum(unit.values())
        sizes = _allocate(design, sized, unit, target - fixed, mmap)
        total = lambda s: fixed + sum(unit[k] * s[k] for k in sized)  # noqa: E731
        improved = True
        while improved:
            improved = False
            for k in sized:
                for step in (1, -1):
                    trial = {**sizes, k: sizes[k] + step} if sizes[k] + step >= 1 else None
                    if trial and abs(total(trial) - target) < abs(total(sizes) - target):
                        sizes, improved = trial, True
        design = _with_sizes(design, sizes)
        tolerance = max(unit.values()) // 2
    else:
        tolerance = 0
    achieved = sum(_cost(design, model, mmap).values())
    report = {
        "target": target,
        "achieved": achieved,
        "error_percent": 100.0 * (achieved - target) / target,
        "allocation": design.budget.allocation,
        "tolerance": tolerance,
    }
    return design, report


def _allocate(design: Design, sized, unit, remaining: float, mmap: ModelMap) -> dict:
    tuned_groups = sorted({g for g, _ in sized})
    layers = [(g, layer.index) for g in tuned_groups for layer in group_layers(design.groups[g], mmap)]
    layers.sort(key=lambda x: x[1])
    n = len(layers)
    weight_of = {
        "uniform": lambda rank: 1.0,
        "increasing": lambda rank: float(rank + 1),
        "decreasing": lambda rank: float(n - rank),
    }[design.budget.allocation]
    group_weight = {g: 0.0 for g in tuned_groups}
    for rank, (g, _) in enumerate(layers):
        group_weight[g] += weight_of(rank)
    total_weight = sum(group_weight.values())
    sizes = {}
    for g in tuned_groups:
        members = [k for k in sized if k[0] == g]
        share = remaining * group_weight[g] / total_weight / len(members)
        for k in members:
            sizes[k] = max(1, round(share / unit[k])) if unit[k] > 0 else 1
    return sizes

