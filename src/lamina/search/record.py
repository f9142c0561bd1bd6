"""The record of a search, rebuilt from the study store at any time (by any worker, or by `lamina report`
from a storage URL): settings, each stage's trials (every attempt, with which one counts), statistics,
notes and winner, the compute spent, and the final point."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from lamina.search import store
from lamina.search.analysis import Row, decide, to_plain, to_value
from lamina.search.space import COMPONENTS, Point, SearchSpace, choice_label


def stage_rows(trials, n: int) -> list[Row]:
    """The counted trial of every candidate, scored (see `analysis`)."""
    state = store.stage_state(trials, n)
    rows = []
    for c, t in sorted(state.counted.items()):
        if t.state == TrialState.COMPLETE:
            score = t.value
        elif t.state == TrialState.PRUNED and t.intermediate_values:
            score = t.intermediate_values[max(t.intermediate_values)]
        else:
            score = None
        rows.append(Row(t.number, c, Point.from_dict(t.user_attrs["point"]), t.state.name, score))
    return rows


def build_record(storage, name: str, storage_label: str = "") -> dict:
    """The whole search from the store: settings, each stage's trials, statistics and winner."""
    config = store.stored_config(storage, name)
    space = SearchSpace.from_dict(config["space"])
    root = optuna.load_study(storage=storage, study_name=name)
    record = {"study": name, "storage": storage_label, "config": config, "stages": [], "final": None}
    fixed: dict = {}
    names = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    totals = {"trials": 0, "attempts": 0, "pruned": 0, "failed": 0, "steps": 0, "planned_steps": 0, "seconds": 0.0}
    for k, component in enumerate(space.stages, 1):
        study_name = store.stage_study_name(name, k, component)
        winner = root.user_attrs.get(f"winner.{component}")
        entry = {"index": k, "component": component, "analysis": space.analysis(component), "study": study_name,
                 "fixed": {c: to_plain(v) for c, v in fixed.items()},
                 "fixed_labels": {c: choice_label(c, v) for c, v in fixed.items()}, "trials": [], "stats": [], "notes": [],
                 "winner": winner, "winner_label": choice_label(component, to_value(component, winner)) if winner is not None else None}
        if study_name in names:
            trials = optuna.load_study(storage=storage, study_name=study_name).get_trials(deepcopy=False)
            n = config["trials_per_stage"]
            rows = stage_rows(trials, n)
            counted = {r.trial for r in rows}
            for t in sorted(trials, key=lambda t: t.number):
                entry["trials"].append(_trial_entry(t, counted))
                totals["attempts"] += 1
                totals["seconds"] += _attrs(t).get("seconds", 0.0) or 0.0
            for t in trials:
                if t.number in counted:
                    result = _attrs(t)
                    totals["trials"] += 1
                    totals["pruned"] += t.state == TrialState.PRUNED
                    totals["failed"] += t.state == TrialState.FAIL
                    totals["steps"] += result.get("steps", 0) or 0
                    totals["planned_steps"] += result.get("planned_steps", 0) or 0
            if store.stage_state(trials, n).complete and rows:
                _, entry["stats"], entry["notes"] = decide(component, rows, space, fixed)
        elif winner is not None:
            entry["notes"].append("fixed by the space (one choice): no trials")
        if root.user_attrs.get(f"note.{component}"):
            entry["notes"].append(root.user_attrs[f"note.{component}"])
        record["stages"].append(entry)
        if winner is None:
            break
        fixed[component] = to_value(component, winner)
    totals["seconds"] = round(totals["seconds"], 2)
    totals["saved_steps_percent"] = (100.0 * (1 - totals["steps"] / totals["planned_steps"])
                                     if totals["planned_steps"] else 0.0)
    record["compute"] = totals
    if all(c in fixed for c in COMPONENTS):
        point = Point(**fixed)
        record["final"] = {"point": point.to_dict(), "label": point.label()}
    return record


def _attrs(t) -> dict:
    """A trial's user attrs with its `result` attr flattened in."""
    return {**t.user_attrs, **t.user_attrs.get("result", {})}


def _trial_entry(t, counted: set) -> dict:
    attrs = _attrs(t)
    return {
        "trial": t.number, "candidate": attrs.get("candidate"), "state": t.state.name, "counted": t.number in counted,
        "value": t.value, "label": attrs.get("label"), "point": attrs.get("point"), "params": t.params,
        "scores": attrs.get("scores"), "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
        "steps": attrs.get("steps"), "planned_steps": attrs.get("planned_steps"), "seconds": attrs.get("seconds"),
        "trainable": attrs.get("trainable_params", attrs.get("trainable")), "stored": attrs.get("stored_params", attrs.get("stored")),
        "budget": attrs.get("budget"), "train_budget": attrs.get("train_budget"),
        "sized_design": attrs.get("sized_design"), "error": attrs.get("error"),
        "duplicate_of": attrs.get("duplicate_of"), "retry_of": t.system_attrs.get("failed_trial"),
        "worker": attrs.get("worker"),
    }
