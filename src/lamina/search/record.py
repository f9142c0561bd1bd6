"""The record of a search, rebuilt from the study store at any time (by any worker, or by `lamina report`
from a storage URL): settings, each phase's trials (every attempt, with which one counts), a greedy
stage's statistics, notes and winner, the joint search's warm starts, the one-shot search's gates, the
final design and its training, and the compute ledger."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from lamina.search import store
from lamina.search.analysis import Row, decide, to_plain, to_value
from lamina.search.ledger import build_ledger
from lamina.search.space import Point, SearchSpace, choice_label

FINAL = "final"


def stage_rows(trials, n: int) -> list[Row]:
    """The counted trial of every candidate, scored (see `analysis`)."""
    state = store.stage_state(trials, n)
    rows = []
    for c, t in sorted(state.counted.items()):
        rows.append(Row(t.number, c, Point.from_dict(t.user_attrs["point"]) if t.user_attrs.get("point") else None,
                        t.state.name, trial_score(t)))
    return rows


def trial_score(t) -> float | None:
    """A complete trial's value; a pruned trial's last reported value; None otherwise."""
    if t.state == TrialState.COMPLETE:
        return t.value
    if t.state == TrialState.PRUNED and t.intermediate_values:
        return t.intermediate_values[max(t.intermediate_values)]
    return None


def build_record(storage, name: str, storage_label: str = "") -> dict:
    """The whole search from the store, whatever its strategy."""
    config = store.stored_config(storage, name)
    space = SearchSpace.from_dict(config["space"])
    strategy = config.get("strategy", "greedy")
    root = optuna.load_study(storage=storage, study_name=name)
    names = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}

    def trials_of(study_name: str):
        if study_name not in names:
            return None
        return optuna.load_study(storage=storage, study_name=study_name)

    record = {"study": name, "storage": storage_label, "strategy": strategy, "config": config, "stages": [],
              "final": None}
    extras = []
    if strategy == "greedy":
        _greedy(record, root, space, config, trials_of, name)
    else:
        phase = "joint" if strategy == "joint" else "supernet"
        study = trials_of(store.phase_study_name(name, phase))
        n = config["trials"] if strategy == "joint" else 1
        entry = _phase_entry(1, phase, "tpe" if strategy == "joint" else "gates", store.phase_study_name(name, phase),
                             study, n)
        if study is not None and strategy == "joint" and study.user_attrs.get("warm_start"):
            entry["warm_start"] = study.user_attrs["warm_start"]
            probe = entry["warm_start"].get("probe")
            if probe:
                extras.append({"name": "warm start (lamina suggest probe)", **probe})
        if strategy == "one-shot":
            counted = [t for t in entry["trials"] if t["counted"]]
            entry["supernet"] = counted[0].get("supernet") if counted else None
        final = root.user_attrs.get("final_design")
        entry["winner_label"] = final["label"] if final else None
        entry["winner"] = entry["winner_label"]
        entry["notes"] += list((final or {}).get("notes", []))
        record["stages"].append(entry)
    final = root.user_attrs.get("final_design")
    final_study = trials_of(store.phase_study_name(name, FINAL))
    final_entries = _entries(final_study, 1) if final_study is not None else []
    reference, reused = next((t for t in final_entries if t["counted"]), None), False
    if final and final.get("reuse"):
        reuse = final["reuse"]
        reference = next((t for s in record["stages"] if s["study"] == reuse["study"] for t in s["trials"]
                          if t["trial"] == reuse["trial"]), None)
        reused = reference is not None
    if final:
        record["final"] = {k: v for k, v in final.items() if k != "notes"}
        record["final"]["training"] = {**reference, "reused": reused} if reference else None
        record["final"]["attempts"] = final_entries
    phases = [{"name": _phase_name(s), "trials": s["trials"]} for s in record["stages"]]
    record["compute"] = _totals(record["stages"])
    record["ledger"] = build_ledger(phases, reference, extras, reused=reused)
    return record


def _phase_name(stage: dict) -> str:
    return f"stage {stage['index']} {stage['component']}" if stage["analysis"] in ("choice", "marginal") else stage["component"]


def _greedy(record, root, space, config, trials_of, name) -> None:
    fixed: dict = {}
    for k, component in enumerate(space.stages, 1):
        study_name = store.stage_study_name(name, k, component)
        winner = root.user_attrs.get(f"winner.{component}")
        study = trials_of(study_name)
        n = config["trials_per_stage"]
        entry = _phase_entry(k, component, space.analysis(component), study_name, study, n)
        entry.update(fixed={c: to_plain(v) for c, v in fixed.items()},
                     fixed_labels={c: choice_label(c, v) for c, v in fixed.items()}, winner=winner,
                     winner_label=choice_label(component, to_value(component, winner)) if winner is not None else None)
        if study is not None:
            trials = study.get_trials(deepcopy=False)
            rows = stage_rows(trials, n)
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


def _phase_entry(index: int, component: str, analysis: str, study_name: str, study, n: int) -> dict:
    return {"index": index, "component": component, "analysis": analysis, "study": study_name, "fixed": {},
            "fixed_labels": {}, "trials": _entries(study, n) if study is not None else [], "stats": [], "notes": [],
            "winner": None, "winner_label": None}


def _entries(study, n: int) -> list[dict]:
    trials = study.get_trials(deepcopy=False)
    counted = {t.number for t in store.stage_state(trials, n).counted.values()}
    return [_trial_entry(t, counted) for t in sorted(trials, key=lambda t: t.number)]


def _totals(stages: list[dict]) -> dict:
    """Trials, pruned, failed, steps and planned steps of the counted trials; seconds of every attempt
    (the search phases only: the final training is the ledger's reference)."""
    totals = {"trials": 0, "attempts": 0, "pruned": 0, "failed": 0, "steps": 0, "planned_steps": 0, "seconds": 0.0}
    for stage in stages:
        for t in stage["trials"]:
            totals["attempts"] += 1
            totals["seconds"] += t.get("seconds") or 0.0
            if t["counted"]:
                totals["trials"] += 1
                totals["pruned"] += t["state"] == "PRUNED"
                totals["failed"] += t["state"] == "FAIL"
                totals["steps"] += t.get("steps") or 0
                totals["planned_steps"] += t.get("planned_steps") or 0
    totals["seconds"] = round(totals["seconds"], 2)
    totals["saved_steps_percent"] = (100.0 * (1 - totals["steps"] / totals["planned_steps"])
                                     if totals["planned_steps"] else 0.0)
    return totals


def _attrs(t) -> dict:
    """A trial's user attrs with its `result` attr flattened in."""
    return {**t.user_attrs, **t.user_attrs.get("result", {})}


def _trial_entry(t, counted: set) -> dict:
    attrs = _attrs(t)
    return {
        "trial": t.number, "candidate": attrs.get("candidate"), "state": t.state.name, "counted": t.number in counted,
        "value": t.value, "score": trial_score(t), "label": attrs.get("label"), "point": attrs.get("point"),
        "params": t.params, "kind": attrs.get("kind", "design"), "warm_start": attrs.get("warm_start"),
        "scores": attrs.get("scores"), "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
        "steps": attrs.get("steps"), "planned_steps": attrs.get("planned_steps"), "seconds": attrs.get("seconds"),
        "cpu_s": attrs.get("cpu_s"), "examples": attrs.get("examples"), "eval_examples": attrs.get("eval_examples"),
        "completed": t.datetime_complete.isoformat() if t.datetime_complete else None,
        "trainable": attrs.get("trainable_params", attrs.get("trainable")), "stored": attrs.get("stored_params", attrs.get("stored")),
        "budget": attrs.get("budget"), "train_budget": attrs.get("train_budget"), "design": attrs.get("design"),
        "sized_design": attrs.get("sized_design"), "error": attrs.get("error"), "supernet": attrs.get("supernet"),
        "duplicate_of": attrs.get("duplicate_of"), "retry_of": t.system_attrs.get("failed_trial"),
        "worker": attrs.get("worker"),
    }
