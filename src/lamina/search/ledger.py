"""The compute ledger of a search: what finding the design cost, in the units of training it once.

Every trial execution records its optimizer steps, training examples, evaluated examples, CPU seconds
(`time.process_time()` of its worker: all of that process's threads) and wall seconds, whatever its
outcome (complete, pruned, failed). The ledger sums them per phase (a greedy stage, the joint study, the
supernet, and the `lamina suggest` probe that warm-starts a joint search) and in total, and sets the total
against one training of the final design under the same settings (the final study's trial): a search's
cost reads as **N full-training equivalents**, per measure. CPU seconds are the headline (a supernet step
costs more than a design's step, so steps alone would flatter it); steps and examples are exact and
machine-independent; wall seconds depend on the machine's load.

Attempts killed with their worker (SIGKILL, a lost machine) record nothing; the ledger counts them
(`killed`) but cannot price them, so a resumed search's ledger is a lower bound by that much.

The anytime series: finished trials in order of completion, cumulative cost on x, the best complete
design score so far on y (a pruned trial's partial score is not a design's score; a supernet's score is
not a design's score either), then the final design's retrained score at total + one training.
"""

from __future__ import annotations

MEASURES = ("steps", "examples", "eval_examples", "cpu_s", "wall_s")
EQUIVALENT = ("cpu_s", "steps", "examples", "wall_s")


def trial_cost(entry: dict) -> dict | None:
    """The compute a record trial entry spent, or None when it recorded none (a killed attempt)."""
    if entry.get("seconds") is None:
        return None
    return {"steps": entry.get("steps") or 0, "examples": entry.get("examples") or 0,
            "eval_examples": entry.get("eval_examples") or 0, "cpu_s": float(entry.get("cpu_s") or 0.0),
            "wall_s": float(entry.get("seconds") or 0.0)}


def _zero() -> dict:
    return {m: 0 if m in ("steps", "examples", "eval_examples") else 0.0 for m in MEASURES}


def _add(total: dict, cost: dict) -> None:
    for m in MEASURES:
        total[m] += cost.get(m) or 0


def _rounded(row: dict) -> dict:
    """Seconds to 0.01 s (scores are not seconds: callers add them after)."""
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}


def build_ledger(phases: list[dict], final: dict | None, extras: list[dict] = (), reused: bool = False) -> dict:
    """`phases`: [{"name", "trials": record trial entries}] of the search; `final`: the trial entry of one
    training of the final design (the reference; `reused`: a trial of the search itself, when the final
    design was one of its complete trials); `extras`: compute outside any trial ({"name", "steps",
    "examples", "cpu_s", "wall_s", ...}, e.g. the suggest probe)."""
    rows, total = [], _zero()
    total.update(trials=0, killed=0)
    for extra in extras:
        cost = {m: extra.get(m) or 0 for m in MEASURES}
        rows.append(_rounded({"phase": extra["name"], "trials": 0, "killed": 0, **cost}))
        _add(total, cost)
    for phase in phases:
        row = {"phase": phase["name"], "trials": 0, "killed": 0, **_zero()}
        for t in phase["trials"]:
            cost = trial_cost(t)
            if cost is None:
                row["killed"] += t.get("state") == "FAIL" and t.get("duplicate_of") is None
                continue
            row["trials"] += 1
            _add(row, cost)
        total["trials"] += row["trials"]
        total["killed"] += row["killed"]
        _add(total, row)
        rows.append(_rounded(row))
    reference = None
    if final is not None and trial_cost(final) is not None:
        reference = {**_rounded(trial_cost(final)), "score": final.get("value"), "reused": reused}
    equivalents = {}
    if reference:
        equivalents = {m: round(total[m] / reference[m], 3) if reference[m] else None for m in EQUIVALENT}
    return {"phases": rows, "total": _rounded(total), "reference": reference, "equivalents": equivalents,
            "anytime": anytime(phases, reference, total)}


def anytime(phases: list[dict], reference: dict | None, total: dict) -> list[dict]:
    """Best complete design score so far against cumulative compute (absolute, and in full-training
    equivalents when the reference is known), in order of completion; the last point is the final
    design's retrained score at the search's total plus one training."""
    finished = [t for phase in phases for t in phase["trials"] if trial_cost(t) is not None]
    finished.sort(key=lambda t: (t.get("completed") or "", t.get("trial", 0)))
    # the compute outside trials (a probe) comes first
    spent = {m: total[m] - sum(trial_cost(t)[m] for t in finished) for m in MEASURES}
    best, points = None, []
    for t in finished:
        _add(spent, trial_cost(t))
        if t.get("state") == "COMPLETE" and t.get("value") is not None and t.get("kind", "design") == "design":
            best = t["value"] if best is None else max(best, t["value"])
        points.append(_point(spent, best, reference, t.get("trial"), "trial"))
    if reference is not None:  # a reused reference is already in the total: the design is trained by then
        final = {m: total[m] + (0 if reference.get("reused") else reference[m]) for m in MEASURES}
        points.append(_point(final, reference.get("score"), reference, None, "final"))
    return points


def _point(spent: dict, best, reference: dict | None, trial, kind: str) -> dict:
    point = {"kind": kind, "trial": trial, "best": best, "cpu_s": round(spent["cpu_s"], 2), "steps": spent["steps"]}
    if reference:
        point["cpu_equivalents"] = round(spent["cpu_s"] / reference["cpu_s"], 4) if reference["cpu_s"] else None
        point["step_equivalents"] = round(spent["steps"] / reference["steps"], 4) if reference["steps"] else None
    return point
