"""Stage statistics and the greedy decision: which choice of the studied component is fixed.

A stage's rows are its counted trials (one per candidate, see `store.stage_state`), each with the
sampled `Point` and a score: the mean of the tasks' main metrics for a completed trial; for a trial
stopped by the pruner, its last reported score (it was stopped because it was behind its peers at that
point; leaving it out would make a choice look better the more of its designs were pruned); a trial
whose training raised has no score and is listed under `failed`.

**choice analysis** (grouping, allocation; tunable with `analysis: choice`): one row per choice with
n, mean, median, std (sample, n-1), min, max, pruned, failed. The winner has the highest mean; ties
(within 1e-9) go to the higher median, then the higher minimum, then the choice listed first in the
space file. A choice without scored trials cannot win.

**marginal analysis** (tunable groups, strategies): the components whose values are subsets are judged
item by item, which is what a few trials can support (4 groups have 15 non-empty subsets, and 15^4
strategy assignments). For each group g (tunable) or each (group g, strategy s) pair (strategies, over
the trials in which g is tuned), the trials with the item are compared with the trials without it; the
item is kept when its "with" mean is at least its "without" mean (ties keep it; a side without trials
defers to the side with trials). A subset that would end up empty keeps the item with the largest
with-minus-without difference; if no tuned group keeps a sized strategy (adapter, prefix, lora), the
(group, sized strategy) pair with the largest difference is added, so the budget can still be met.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from lamina.search.space import Point, SearchSpace, choice_label, is_sized, letter_of, strategy_order

TIE = 1e-9


@dataclass
class Row:
    """One counted trial of a stage."""

    trial: int
    candidate: int
    point: Point
    state: str  # COMPLETE | PRUNED | FAIL
    score: float | None


def summarize(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "mean": None, "median": None, "std": None, "min": None, "max": None}
    return {
        "n": len(values), "mean": statistics.fmean(values), "median": statistics.median(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0, "min": min(values), "max": max(values),
    }


def _group_stats(rows: list[Row]) -> dict:
    scored = [r.score for r in rows if r.score is not None and math.isfinite(r.score)]
    out = summarize(scored)
    out["pruned"] = sum(r.state == "PRUNED" for r in rows)
    out["failed"] = sum(r.score is None for r in rows)
    out["trials"] = [r.trial for r in rows]
    return out


def _rank_key(stats: dict, order: int):
    return (stats["mean"], stats["median"], stats["min"], -order)


def choice_stats(component: str, rows: list[Row], choices: list) -> list[dict]:
    table = []
    for order, choice in enumerate(choices):
        mine = [r for r in rows if r.point.value(component) == choice]
        if not mine and len(choices) > 12:
            continue  # a long list (e.g. every subset): show only the choices that were sampled
        stats = _group_stats(mine)
        table.append({"choice": choice_label(component, choice), "value": _plain(choice), "order": order, **stats})
    return table


def pick(table: list[dict]) -> dict | None:
    """The winning row: highest mean, then median, then minimum, then earliest in the space."""
    scored = [row for row in table if row["n"]]
    if not scored:
        return None
    best = scored[0]
    for row in scored[1:]:
        a, b = _rank_key(row, row["order"]), _rank_key(best, best["order"])
        if row["mean"] > best["mean"] + TIE or (abs(row["mean"] - best["mean"]) <= TIE and a[1:] > b[1:]):
            best = row
    return best


def marginal_stats(component: str, rows: list[Row], space: SearchSpace, fixed: dict) -> list[dict]:
    """Rows of (item, with, without) statistics: items are groups (tunable) or (group, strategy)."""
    table = []
    groups = range(1, space.groups + 1)
    if component == "tunable":
        for g in groups:
            with_ = [r for r in rows if g in r.point.tunable]
            without = [r for r in rows if g not in r.point.tunable]
            table.append(_item(f"G{g}", g, None, with_, without))
        return table
    for g in groups:
        considered = [r for r in rows if g in r.point.tunable]
        if "tunable" in fixed and g not in fixed["tunable"]:
            continue
        for s in space.strategies.choices:
            with_ = [r for r in considered if s in r.point.strategies[g - 1]]
            without = [r for r in considered if s not in r.point.strategies[g - 1]]
            table.append(_item(f"G{g}:{letter_of(s)}", g, s, with_, without))
    return table


def _item(label, group, strategy, with_rows, without_rows) -> dict:
    w, wo = _group_stats(with_rows), _group_stats(without_rows)
    if w["n"] and wo["n"]:
        keep = w["mean"] >= wo["mean"] - TIE
        diff = w["mean"] - wo["mean"]
    else:
        keep = bool(w["n"])  # a side without trials defers to the side with trials
        diff = 0.0 if keep else -math.inf
    return {"item": label, "group": group, "strategy": strategy, "with": w, "without": wo,
            "difference": diff, "keep": keep}


def decide(component: str, rows: list[Row], space: SearchSpace, fixed: dict) -> tuple[object, list[dict], list[str]]:
    """(winning value, statistics table, notes) of a finished stage."""
    notes: list[str] = []
    if space.analysis(component) == "choice":
        table = choice_stats(component, rows, space.choices(component))
        best = pick(table)
        if best is None:
            return None, table, ["no trial of this stage has a score"]
        for row in table:
            row["winner"] = row is best
        return _value(component, best["value"]), table, notes
    table = marginal_stats(component, rows, space, fixed)
    if not any(r.score is not None for r in rows):
        return None, table, ["no trial of this stage has a score"]
    if component == "tunable":
        kept = tuple(row["group"] for row in table if row["keep"])
        if not kept:
            best = max(table, key=lambda row: row["difference"])
            kept = (best["group"],)
            notes.append(f"no group kept on its own; {best['item']} (largest difference) is tuned")
        for row in table:
            row["winner"] = row["group"] in kept
        return kept, table, notes
    tuned = fixed.get("tunable", tuple(range(1, space.groups + 1)))
    subsets = {g: [row["strategy"] for row in table if row["group"] == g and row["keep"]] for g in tuned}
    for g in tuned:
        if not subsets[g]:
            candidates = [row for row in table if row["group"] == g]
            if candidates:
                best = max(candidates, key=lambda row: row["difference"])
                subsets[g] = [best["strategy"]]
                notes.append(f"G{g}: no strategy kept on its own; {letter_of(best['strategy'])} (largest difference) kept")
    if not any(is_sized(m) for g in tuned for m in subsets[g]):
        sized = [row for row in table if row["group"] in tuned and is_sized(row["strategy"])]
        if sized:
            best = max(sized, key=lambda row: row["difference"])
            subsets[best["group"]].append(best["strategy"])
            notes.append(f"no sized strategy kept; {best['item']} added so the budget can be met")
    for row in table:
        row["winner"] = row["keep"] if row["strategy"] is None else row["strategy"] in subsets.get(row["group"], [])
    value = tuple(tuple(s for s in strategy_order() if s in subsets.get(g, [])) for g in range(1, space.groups + 1))
    return value, table, notes


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _value(component: str, plain):
    if component == "tunable":
        return tuple(plain)
    if component == "strategies":
        return tuple(tuple(s) for s in plain)
    return plain


def to_value(component: str, plain):
    """A stored (JSON) winner back to the Point field's type."""
    return _value(component, plain)


def to_plain(value):
    return _plain(value)
