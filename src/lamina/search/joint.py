"""`--strategy joint`: all four components searched at once by a model-based sampler, with multi-fidelity
pruning, warm-started with the designs `lamina suggest` proposes.

- **Parameters** (Optuna categoricals): `grouping`, `allocation`, and one on/off switch per (group, method)
  — `G3.L` = LoRA in group 3 — so the sampler models each placement and their interactions rather than
  2^|methods| opaque subsets per group; a group with no method switched on is frozen (the tunable
  component), unless the space lists its tunable subsets explicitly, which then get their own `tunable`
  parameter. A sampled point that trains no sized method, or that no size meets the budget with, is
  recorded as a failed trial ("infeasible") without training.
- **Sampler**: Optuna's TPE, multivariate (it models the joint density of the parameters, so it can learn
  "LoRA in group 4 *and* adapters in group 2"), with the constant liar (concurrent workers do not sample
  the same point), seeded per trial (the same history gives the same point), `startup_trials` random
  points first (default: a third of the trials, 2 to 10; the warm starts count among them).
- **Fidelity**: every evaluation (`eval_steps`) is reported; `asha` (Optuna's SuccessiveHalvingPruner) or
  `hyperband` (HyperbandPruner) stops trials that trail at a rung (on by default for this strategy).
- **Warm start**: `lamina suggest` probes the first task's training data once (2 % of the optimizer steps
  the whole search plans, at least one batch) and allocates the budget with and without SPAFIT's depth
  prior; each proposal is projected onto the space (the grouping pattern whose groups agree with the most
  (layer, method) cells, a method kept in a group when the proposal puts it in most of the group's layers,
  uniform allocation) and enqueued first. The probe's cost is in the ledger.
- **Exactly once**: the study holds `trials` pre-planned slots (warm starts with their parameters, then
  empty slots); a worker claims a slot atomically and samples its parameters only then, from every trial
  finished so far. A retried slot keeps the parameters it was given.

The final design is the best complete trial's (highest score; ties: the earlier candidate). Its trial
*is* one training of it under the search's settings (training is deterministic), so it is the ledger's
reference and its trial folder holds the trained adapter: no retraining.
"""

from __future__ import annotations

import math
import warnings

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from lamina.design import split_layers
from lamina.errors import LaminaError
from lamina.search import store
from lamina.search.space import Point, SearchSpace, choice_label, is_sized, letter_of
from lamina.search.stages import pruner

PHASE = "joint"
PRIORS = ("none", "depth")


class Infeasible(LaminaError):
    """A sampled point no budget-sized design exists for: recorded as a failed trial, never trained."""


# --------------------------------------------------------------------------- parameters


def parameters(space: SearchSpace) -> dict[str, list]:
    """Name -> choices of every parameter, in sampling order."""
    params = {"grouping": list(space.grouping), "allocation": list(space.allocation)}
    if space.tunable.choices != "all":
        params["tunable"] = [choice_label("tunable", c) for c in space.tunable_choices()]
    for g in range(1, space.groups + 1):
        for m in space.strategies.choices:
            params[f"G{g}.{letter_of(m)}"] = [0, 1]
    return params


def distributions(space: SearchSpace) -> dict[str, CategoricalDistribution]:
    return {name: CategoricalDistribution(choices) for name, choices in parameters(space).items()}


def point_of(space: SearchSpace, params: dict) -> Point:
    """The point of a parameter assignment; raises Infeasible when it trains no sized method."""
    groups = range(1, space.groups + 1)
    chosen = tuple(tuple(m for m in space.strategies.choices if params.get(f"G{g}.{letter_of(m)}")) for g in groups)
    if "tunable" in params:
        tunable = next(c for c in space.tunable_choices() if choice_label("tunable", c) == params["tunable"])
        if any(not chosen[g - 1] for g in tunable):
            raise Infeasible(f"a tuned group has no method switched on ({params['tunable']})")
    else:
        tunable = tuple(g for g in groups if chosen[g - 1])
    if not tunable:
        raise Infeasible("no method switched on in any group: nothing would train")
    point = Point(params["grouping"], params["allocation"], tunable, chosen)
    if not point.trains_sized():
        raise Infeasible(f"{point.label()} trains no sized method, so no size can meet the budget")
    return point


def params_of(space: SearchSpace, point: Point) -> dict:
    params = {"grouping": point.grouping, "allocation": point.allocation}
    if space.tunable.choices != "all":
        params["tunable"] = choice_label("tunable", point.tunable)
    for g in range(1, space.groups + 1):
        for m in space.strategies.choices:
            params[f"G{g}.{letter_of(m)}"] = int(g in point.tunable and m in point.strategies[g - 1])
    return params


def sampler(config, number: int):
    startup = config.startup_trials if config.startup_trials is not None else max(2, min(10, config.trials // 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(multivariate=True, constant_liar=True, n_startup_trials=startup,
                                          seed=(config.space.seed * 100_003 + number) % 2**32)


# --------------------------------------------------------------------------- warm start


def project(space: SearchSpace, design, num_layers: int) -> tuple[Point | None, int]:
    """The point of the space closest to a per-layer design: (point or None, cells it agrees on)."""
    cells = {(layer, s.method) for g in design.groups for layer in range(g.first, g.last + 1) for s in g.strategies}
    methods = space.strategies.choices
    best, best_key = None, None
    for order, pattern in enumerate(space.grouping):
        bounds = split_layers(num_layers, space.groups, pattern)
        chosen = tuple(tuple(m for m in methods if 2 * sum((l, m) in cells for l in range(a, b + 1)) > b - a + 1)
                       for a, b in bounds)
        agree = sum(((layer, m) in cells) == (m in chosen[g]) for g, (a, b) in enumerate(bounds)
                    for layer in range(a, b + 1) for m in methods)
        if best_key is None or (agree, -order) > best_key:
            allocation = "uniform" if "uniform" in space.allocation else space.allocation[0]
            tunable = tuple(g + 1 for g in range(space.groups) if chosen[g])
            best, best_key = (Point(pattern, allocation, tunable, chosen) if tunable else None), (agree, -order)
    if best is not None and space.tunable.choices != "all" and best.tunable not in space.tunable_choices():
        best = None
    return (best if best is not None and best.trains_sized() else None), best_key[0]


def warm_starts(engine) -> dict:
    """Probe once with `lamina suggest`, allocate with each prior, project onto the space: the points to
    enqueue first and what it cost."""
    from lamina.evaluate import load_split, resolve_task
    from lamina.suggest import CANDIDATES, planned_steps, suggest
    from lamina.suggest.allocate import allocate

    cfg, space = engine.config, engine.space
    methods = tuple(m for m in space.strategies.choices if m in CANDIDATES)
    if not methods or not any(is_sized(m) for m in methods):
        return {"points": [], "notes": ["lamina suggest cannot place any sized method of this space: no warm start"]}
    spec, path = resolve_task(cfg.tasks[0], cfg.data_for(0))
    examples, _ = load_split(spec, path, "train", cfg.train_limit)
    per_trial = planned_steps(max(len(examples), 1), cfg.batch_size, epochs=cfg.epochs)
    steps = max(1, math.floor(0.02 * per_trial * cfg.trials))
    s = suggest(cfg.model, cfg.tasks[0], cfg.data_for(0), budget=space.budget, methods=methods, probe_steps=steps,
                seed=space.seed, batch_size=cfg.batch_size, max_length=cfg.max_length, train_limit=cfg.train_limit)
    model, num_layers = engine.model_info()
    info = {"probe": {"steps": s.probe.steps, "examples": s.probe.examples, "cpu_s": round(s.timing["cpu_s"], 2),
                      "wall_s": round(s.timing["wall_s"], 2), "planned_steps": per_trial * cfg.trials},
            "points": [], "proposals": [], "notes": list(s.notes)}
    for prior in PRIORS:
        design = s.design if prior == "none" else allocate(s.probe, model, s.allocation.target, space.budget, prior=prior).design
        point, agree = project(space, design, num_layers)
        info["proposals"].append({"prior": prior, "design": design.to_dict(), "agreement": agree,
                                  "point": point.to_dict() if point else None})
        if point is None or not engine.feasible(point):
            info["notes"].append(f"suggest (prior {prior}): its design has no budget-sized counterpart in this space")
        elif point.to_dict() not in info["points"]:
            info["points"].append(point.to_dict())
    return info


# --------------------------------------------------------------------------- the strategy


def preflight(engine) -> None:
    engine.space.sample(1, "grouping", {}, feasible=engine.feasible, attempts=50)


def search(engine, root: optuna.Study) -> dict:
    cfg, space = engine.config, engine.space
    name = store.phase_study_name(engine.name, PHASE)
    choices = distributions(space)

    def candidates() -> list[store.Candidate]:
        study = optuna.load_study(storage=engine.storage, study_name=name)
        info = study.user_attrs.get("warm_start")
        if info is None:  # the creator (or a joiner repairing a creator that died mid-probe) probes once
            info = warm_starts(engine) if cfg.warm_start else {"points": [], "notes": ["warm start off"]}
            study.set_user_attr("warm_start", info)
        out = []
        for i, plain in enumerate(info["points"][:cfg.trials]):
            point = Point.from_dict(plain)
            attrs = {**engine.design_attrs(engine.design_of(point), point), "warm_start": "lamina suggest"}
            params = params_of(space, point)
            out.append(store.Candidate(i, params, {k: choices[k] for k in params}, attrs))
        out += [store.Candidate(i, {}, {}, {"slot": True}) for i in range(len(out), cfg.trials)]
        return out

    study = engine.work(name, cfg.trials, candidates, {"phase": PHASE}, index=1, component=PHASE,
                        pruner=pruner(cfg), job=_job(engine))
    trials = study.get_trials(deepcopy=False)
    counted = store.stage_state(trials, cfg.trials).counted
    complete = [t for t in counted.values() if t.state == TrialState.COMPLETE and t.value is not None]
    if not complete:
        errors = [t.user_attrs.get("error") for t in counted.values() if t.user_attrs.get("error")]
        raise LaminaError("joint search: no trial completed" + (f"; first error: {errors[0]}" if errors else ""))
    best = max(complete, key=lambda t: (t.value, -t.user_attrs["candidate"]))
    point = Point.from_dict(best.user_attrs["point"])
    return {"point": point.to_dict(), "label": point.label(), "design": engine.design_of(point, name=engine.name).to_dict(),
            "score": best.value, "reuse": {"study": name, "trial": best.number}}


def _job(engine):
    """Sample a slot's parameters when it is claimed (a warm start or a retry already has them), then
    train its design."""
    space = engine.space

    def job(trial, frozen, folder, progress):
        if "design" not in frozen.user_attrs:
            trial.study.sampler = sampler(engine.config, frozen.number)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                params = {n: trial.suggest_categorical(n, c) for n, c in parameters(space).items()}
            point = point_of(space, params)
            if not engine.feasible(point):
                raise Infeasible(f"{point.label()}: no sizes meet the budget {space.budget}")
            for key, value in engine.design_attrs(engine.design_of(point), point).items():
                trial.set_user_attr(key, value)
        return engine.design_job(engine.config.prune)(trial, frozen, folder, progress)

    return job
