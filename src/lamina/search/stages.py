"""`--strategy greedy`: progressive greedy refinement of a design space (Chen et al., ICLR 2023), one
component per stage — the paper's procedure, kept for reproduction.

Stage k studies the k-th component of `space.stages` (default grouping -> allocation -> tunable ->
strategies): it samples N designs in which the components fixed by earlier stages keep their winning
value, the studied component varies (every choice in turn for choice analysis) and the components not yet
fixed are drawn at random; it trains each design briefly (`lamina.train.train`: epochs, a train subset,
an eval subset, one or several tasks) and scores it (the mean of the tasks' main metrics); then it
compares the score distributions per choice (`analysis.decide`) and fixes the winner.

The candidates of a stage are the same on every worker (seeded), enqueued once, trained by whichever
worker is free (`lamina.search.engine.Search.work`); the winner is computed from the stored trials (deterministic).

Optional pruning (`prune=True`): every evaluation (each `eval_steps` optimizer steps, or each epoch) is
reported to Optuna, and Optuna's `SuccessiveHalvingPruner` (asynchronous successive halving; min resource
= the first evaluation step, reduction factor `reduction_factor`) stops trials that trail their stage's
peers at a rung. The final evaluation of a trial is never pruned (the training is already paid for).
"""

from __future__ import annotations

import optuna

from lamina.errors import LaminaError
from lamina.search import store
from lamina.search.analysis import decide, to_plain, to_value
from lamina.search.record import stage_rows
from lamina.search.space import COMPONENTS, Point, SpaceError, choice_label, subset_label


def preflight(engine) -> None:
    engine.space.sample(1, engine.space.stages[0], {}, feasible=engine.feasible, attempts=50)


def candidates(engine, component: str, fixed: dict) -> list[store.Candidate]:
    space = engine.space
    points = space.sample(engine.config.trials_per_stage, component, fixed, feasible=engine.feasible)
    choices = {"grouping": list(space.grouping), "allocation": list(space.allocation),
               "tunable": [choice_label("tunable", c) for c in space.tunable_choices()],
               **{f"G{g}": ["-"] + [subset_label(s) for s in space.strategy_subsets()] for g in range(1, space.groups + 1)}}
    out = []
    for i, point in enumerate(points):
        params = {"grouping": point.grouping, "allocation": point.allocation,
                  "tunable": choice_label("tunable", point.tunable),
                  **{f"G{g}": subset_label(point.strategies[g - 1]) if g in point.tunable else "-"
                     for g in range(1, space.groups + 1)}}
        attrs = engine.design_attrs(engine.design_of(point), point)
        out.append(store.Candidate(i, params, store.categorical(params, choices), attrs))
    return out


def search(engine, root: optuna.Study) -> dict:
    """Every stage in order (a finished stage's stored winner is reused); returns the final design."""
    space = engine.space
    fixed: dict = {}
    for k, component in enumerate(space.stages, 1):
        winner = root.user_attrs.get(f"winner.{component}")
        if winner is None:
            value = _stage(engine, k, component, fixed, root)
            root.set_user_attr(f"winner.{component}", to_plain(value))
            winner = to_plain(value)
        fixed[component] = to_value(component, winner)
        engine.say(f"[stage {k}/{len(space.stages)} {component}] winner: {choice_label(component, fixed[component])}")
    point = Point(**fixed)
    final = {"point": point.to_dict(), "label": point.label(), "design": engine.design_of(point, name=engine.name).to_dict()}
    trained = _trained(engine, point)
    if trained:
        final["reuse"] = trained
    return final


def _trained(engine, point: Point) -> dict | None:
    """The earliest complete trial of any stage that trained exactly this point, if one did."""
    for k, component in enumerate(engine.space.stages, 1):
        name = store.stage_study_name(engine.name, k, component)
        try:
            trials = optuna.load_study(storage=engine.storage, study_name=name).get_trials(deepcopy=False)
        except KeyError:  # a stage fixed by the space has no study
            continue
        counted = store.stage_state(trials, engine.config.trials_per_stage).counted.values()
        for t in sorted(counted, key=lambda t: t.number):
            if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get("point") == point.to_dict():
                return {"study": name, "trial": t.number}
    return None


def pruner(config):
    if not config.prune:
        return optuna.pruners.NopPruner()
    # rungs at eval_steps * eta^k; per-epoch evaluations report at their global step (every rung
    # below it is decided at once), so pruning by epochs needs several epochs
    first = config.eval_steps or 1
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=first, reduction_factor=config.reduction_factor)
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=config.reduction_factor)


def _stage(engine, k: int, component: str, fixed: dict, root: optuna.Study):
    space = engine.space
    if space.analysis(component) == "choice" and len(space.choices(component)) == 1:
        return space.choices(component)[0]  # fixed by the space itself: nothing to compare
    n = engine.config.trials_per_stage
    name = store.stage_study_name(engine.name, k, component)
    attrs = {"stage": k, "component": component, "fixed": {c: to_plain(v) for c, v in fixed.items()}}
    study = engine.work(name, n, lambda: candidates(engine, component, fixed), attrs, index=k, component=component,
                        pruner=pruner(engine.config))
    rows = stage_rows(study.get_trials(deepcopy=False), n)
    value, _, notes = decide(component, rows, space, fixed)
    for note in notes:
        engine.say(f"[stage {k} {component}] {note}")
    if value is None:
        errors = [t.user_attrs.get("error") for t in study.get_trials(deepcopy=False) if t.user_attrs.get("error")]
        raise LaminaError(f"stage {component}: no trial produced a score" + (f"; first error: {errors[0]}" if errors else ""))
    if not _value_feasible(engine, component, value, fixed):
        best = max((r for r in rows if r.score is not None), key=lambda r: (r.score, -r.trial))
        note = (f"{choice_label(component, value)} leaves no design within the budget; fixed the value of the best "
                f"trial ({best.trial}) instead: {choice_label(component, best.point.value(component))}")
        engine.say(f"[stage {k} {component}] {note}")
        root.set_user_attr(f"note.{component}", note)
        value = best.point.value(component)
    return value


def _value_feasible(engine, component: str, value, fixed: dict) -> bool:
    """Whether some design with `value` (and the earlier winners) meets the budget."""
    chosen = {**fixed, component: value}
    if all(c in chosen for c in COMPONENTS):
        point = Point(**chosen)
        return point.trains_sized() and engine.feasible(point)
    following = next(c for c in engine.space.stages if c not in chosen)
    try:
        engine.space.sample(1, following, chosen, feasible=engine.feasible, attempts=50)
    except SpaceError:
        return False
    return True
