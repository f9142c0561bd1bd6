"""From probe signals to a design: score each (layer, method) cell, spend the budget greedily by value
per parameter, group consecutive layers with equal choices, and let the budget solver size them.

The rule, and why:
- value of a cell = its probe signal, times an optional layer prior. Default signal `fisher`: the sum
  over the cell's parameters of the mean squared mini-batch gradient (the empirical Fisher trace, and
  the expected first-order decrease of a batch's loss under an SGD step on it, per unit learning rate).
  The noise-corrected signals (`grad2`, `adam`) are better defined but, measured on MiniLM, a probe of
  2 % of a run is far too short to estimate them: their designs changed with the seed, Fisher's did not
  (docs/suggest.md);
- cost of a cell = its exact parameter count at the probe size, which for a sized method is the size a
  uniform design of that method alone gets at this budget (one "slot": budget / layers), so a cell is
  valued at about the size it will train with;
- greedy: cells in order of value per parameter (ties, such as cells whose signal was all noise, by
  raw squared gradient per parameter), each taken while it still fits in the budget. If one
  method is the best in every layer and nothing else is worth more per parameter, this reproduces that
  method's uniform design at the budget: the suggestion only departs from it where the probe says so;
- consecutive layers (of one stack) with the same chosen methods form a group; `design.at_budget`
  leaves their sizes to the solver, which spreads what the fixed-cost cells leave over the tuned layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lamina.design import Design, DesignError, at_budget
from lamina.suggest.candidates import CANDIDATES, is_sized, strategy
from lamina.suggest.probe import SIGNALS, ProbeResult, depth_prior

PRIORS = ("none", "depth", "change")


@dataclass
class Allocation:
    """The chosen cells, the design they make (sizes solved), and the numbers behind the choice."""

    design: Design
    chosen: set[tuple[int, str]]
    value: dict[tuple[int, str], float]
    density: dict[tuple[int, str], float]
    prior: dict[int, float]
    target: int
    spent_at_probe_size: int
    budget: dict | None
    notes: list[str] = field(default_factory=list)


def layer_prior(result: ProbeResult, prior: str) -> dict[int, float]:
    """none: 1 everywhere; depth: SPAFIT's stratification, (i + 1) / L; change: the layer's
    representation change relative to the mean layer's."""
    if prior not in PRIORS:
        raise DesignError(f"prior: unknown prior '{prior}' (known: {', '.join(PRIORS)})")
    if prior == "depth":
        return depth_prior(result.layers)
    if prior == "change":
        mean = sum(result.change.values()) / max(len(result.change), 1)
        return {i: (result.change[i] / mean if mean > 0 else 1.0) for i in result.layers}
    return dict.fromkeys(result.layers, 1.0)


def allocate(result: ProbeResult, model, target: int, budget_spec, *, signal: str = "fisher",
             prior: str = "none", name: str = "auto") -> Allocation:
    """Choose cells greedily by value per parameter within `target` parameters (without the head) and
    return the grouped design, sized by the budget solver to `budget_spec` (a count or a percentage)."""
    import lamina

    if signal not in SIGNALS:
        raise DesignError(f"signal: unknown signal '{signal}' (known: {', '.join(SIGNALS)})")
    weights = layer_prior(result, prior)
    order = list(CANDIDATES)
    value = {cell: result.stats[cell][signal] * weights[cell[0]] for cell in result.stats}
    density = {cell: value[cell] / result.cost[cell] if result.cost[cell] else 0.0 for cell in value}
    # ties (e.g. cells whose noise-corrected signal is 0: their gradients were all noise) go by the raw
    # squared gradient per parameter, then by layer and method order: deterministic, and the budget is spent
    raw = {c: result.stats[c]["fisher"] / result.cost[c] if result.cost[c] else 0.0 for c in result.stats}
    ranked = sorted(density, key=lambda c: (-density[c], -raw[c], c[0], order.index(c[1])))
    cheapest = min(result.cost.values())
    if cheapest > target:
        raise DesignError(f"budget: {target:,} parameters is too small for any cell (the cheapest, "
                          f"{min(result.cost, key=result.cost.get)[1]}, costs {cheapest:,} in one layer)")
    chosen: set[tuple[int, str]] = set()
    spent = 0
    if not any(raw.values()):
        raise DesignError("the probe measured no gradient in any cell (check the labels and the loss)")
    for cell in ranked:
        if spent + result.cost[cell] <= target:
            chosen.add(cell)
            spent += result.cost[cell]
    design = group_cells(chosen, result, name)
    notes = []
    if any(is_sized(m) for _, m in chosen):
        report = lamina.apply(model, at_budget(design, budget_spec), dry_run=True)
        design, budget = report.design, report.budget
    else:
        report = lamina.apply(model, design, dry_run=True)
        budget = None
        notes.append(f"only fixed-cost methods were chosen: the design trains {spent:,} of the {target:,} "
                     "budgeted parameters (add a sized method, e.g. lora, to fill it)")
    return Allocation(design, chosen, value, density, weights, target, spent, budget, notes)


def group_cells(chosen: set[tuple[int, str]], result: ProbeResult, name: str) -> Design:
    """Consecutive layers of one stack with the same chosen methods -> one group (sizes unsolved);
    layers with nothing chosen stay frozen."""
    order = list(CANDIDATES)
    per_layer = {i: tuple(sorted((m for (l, m) in chosen if l == i), key=order.index)) for i in result.layers}
    groups, start = [], None
    for pos, layer in enumerate(result.layers):
        methods = per_layer[layer]
        nxt = result.layers[pos + 1] if pos + 1 < len(result.layers) else None
        start = layer if start is None else start
        ends = nxt is None or per_layer[nxt] != methods or result.stacks[pos + 1] != result.stacks[pos]
        if ends:
            if methods:
                groups.append({"layers": [start, layer], "strategies": [strategy(m) for m in methods]})
            start = None
    return Design.from_dict({"name": name, "groups": groups, "train_head": True})


def budget_target(model, budget_spec) -> int:
    """The budget in parameters (a count, or a percentage of the base model without its head), as the
    solver counts it."""
    from lamina.arch import count_params, head_params, map_model

    return parse_budget(budget_spec).resolve(count_params(model) - head_params(model, map_model(model)))


def parse_budget(budget_spec):
    """The Budget of an `auto:` / `lamina suggest` budget, or one line saying why it is not one."""
    from pydantic import ValidationError

    from lamina.design import Budget, plain_error

    try:
        return Budget(target=budget_spec)
    except ValidationError as err:
        raise DesignError(f"budget: '{budget_spec}' is not a parameter count or a percentage ({plain_error(err)})") from None
