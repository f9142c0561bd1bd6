"""`--strategy one-shot`: train a gated supernet once, prune it to a budget-sized design, retrain that.

1. **Supernet**: one group per layer holding every method of the space's strategy choices (with the space's
   options), each sized method at the size a uniform design of that method alone gets at the budget (so a
   cell costs about what it would cost in the final design); a cell's cost is its exact trainable count
   from lamina's dry run. Every cell sits behind an architecture gate (`supernet`: through the method
   unit's `scaled_tensors`), trained for the search's epochs with the budget penalty.
2. **Pruning**: cells in order of their learned gate σ(α) (ties: layer, then the space's method order) are
   kept while their costs at supernet size fit in the budget; if no sized method made it, the best-gated
   sized cell is added. Consecutive layers (of one stack) with the same kept methods form a group; the
   budget solver sizes the groups (uniform allocation) — the result is an ordinary design file. Fixed-cost
   cells are dropped, worst gate first, should their cost leave the solver no room.
3. **Retraining**: the engine's final training (the same settings as any trial) trains the pruned design.

The supernet is one trial of the study `NAME.supernet` (one candidate): exactly once, retried from scratch
if its worker dies; the pruning is computed from its stored gates (deterministic, any worker).
"""

from __future__ import annotations

import optuna

from lamina.design import Budget, Design, DesignError, Group
from lamina.errors import LaminaError
from lamina.search import store
from lamina.search.space import is_sized, letter_of

PHASE = "supernet"


def sizes(engine) -> dict[str, int]:
    """Each sized method's size in a uniform design of that method alone at the budget (at least 1)."""
    num_layers = engine.model_info()[1]
    out = {}
    for method in engine.space.strategies.choices:
        if not is_sized(method):
            continue
        uniform = Design(groups=(Group(first=0, last=num_layers - 1, strategies=(engine.space.strategy(method),)),),
                         train_head=engine.space.train_head, budget=Budget(target=engine.space.budget))
        try:
            out[method] = max(1, int(_size_of(engine.dry_run(uniform).design.groups[0].strategies[0])))
        except DesignError:  # the budget is below size 1 in every layer
            out[method] = 1
    return out


def _size_of(strategy) -> int:
    from lamina.methods import METHODS

    return METHODS[strategy.method].size(strategy)


def supernet_design(engine) -> Design:
    from lamina.methods import METHODS

    num_layers, methods, at = engine.model_info()[1], engine.space.strategies.choices, sizes(engine)
    groups = tuple(Group(first=i, last=i, strategies=tuple(
        METHODS[m].resized(engine.space.strategy(m), at[m]) if m in at else engine.space.strategy(m) for m in methods))
        for i in range(num_layers))
    return Design(name="supernet", groups=groups, train_head=engine.space.train_head)


def cell_costs(engine, design: Design) -> dict[tuple[int, str], int]:
    rows = engine.dry_run(design).rows
    return {(design.groups[int(r.group)].first, r.method): r.trainable for r in rows if r.method != "head"}


def budget_target(engine) -> int:
    from lamina.arch import count_params, head_params, map_model

    model = engine.model_info()[0]
    return Budget(target=engine.space.budget).resolve(count_params(model) - head_params(model, map_model(model)))


def prune(engine, gates: dict[tuple[int, str], float], costs: dict[tuple[int, str], int]) -> tuple[Design, list, list]:
    """(budget-sized design, kept cells, notes) from the learned gates."""
    from lamina.arch import map_model

    methods = list(engine.space.strategies.choices)
    target = budget_target(engine)
    ranked = sorted(gates, key=lambda c: (-gates[c], c[0], methods.index(c[1])))
    kept, spent, notes = [], 0, []
    for cell in ranked:
        if spent + costs[cell] <= target:
            kept.append(cell)
            spent += costs[cell]
    if not any(is_sized(m) for _, m in kept):
        best = next(c for c in ranked if is_sized(c[1]))
        kept.append(best)
        notes.append(f"no sized cell fit at supernet size; kept the best-gated one (layer {best[0]}, {letter_of(best[1])})")
    layers = map_model(engine.model_info()[0]).layers
    while True:
        design = _grouped(engine, set(kept), layers, methods)
        if engine.within_budget(design):
            return design, sorted(kept), notes
        fixed = [c for c in kept if not is_sized(c[1])]
        if not fixed:
            raise LaminaError(f"one-shot: the pruned design cannot meet the budget {engine.space.budget}")
        worst = min(fixed, key=lambda c: (gates[c], -c[0]))
        kept.remove(worst)
        notes.append(f"dropped layer {worst[0]} {letter_of(worst[1])}: its fixed cost left the solver no room")


def _grouped(engine, kept: set, layers, methods: list) -> Design:
    """Consecutive layers of one stack with the same kept methods -> one group, sizes left to the solver."""
    groups, start = [], None
    per_layer = [tuple(m for m in methods if (layer.index, m) in kept) for layer in layers]
    for pos, layer in enumerate(layers):
        start = layer.index if start is None else start
        last = pos + 1 == len(layers)
        if last or per_layer[pos + 1] != per_layer[pos] or layers[pos + 1].stack != layer.stack:
            if per_layer[pos]:
                groups.append(Group(first=start, last=layer.index,
                                    strategies=tuple(engine.space.strategy(m) for m in per_layer[pos])))
            start = None
    return Design(groups=tuple(groups), train_head=engine.space.train_head,
                  budget=Budget(target=engine.space.budget, allocation="uniform"))


def label(design: Design) -> str:
    def span(g):
        return f"L{g.first}" if g.first == g.last else f"L{g.first}-{g.last}"

    return " ".join(f"{span(g)}({'+'.join(letter_of(s.method) for s in g.strategies)})" for g in design.groups)


# --------------------------------------------------------------------------- the strategy


def preflight(engine) -> None:
    if len(engine.config.tasks) > 1:
        raise LaminaError("--strategy one-shot trains its supernet on one task; give one --task, or search "
                          "several tasks with --strategy joint or greedy")
    design = supernet_design(engine)
    cell_costs(engine, design)  # builds it on the meta device: a method this model cannot host fails here
    sized = [m for m in engine.space.strategies.choices if is_sized(m)]
    smallest = [Design(groups=(Group(first=0, last=0, strategies=(engine.space.strategy(m),)),),
                       train_head=engine.space.train_head, budget=Budget(target=engine.space.budget, allocation="uniform"))
                for m in sized]
    if sized and not any(_fits_under(engine, d) for d in smallest):  # pruning keeps at least one sized cell
        raise LaminaError(f"budget {engine.space.budget}: below the smallest design the supernet can be pruned to "
                          f"(one layer with one of {', '.join(sized)}); give a larger budget")


def _fits_under(engine, design: Design) -> bool:
    """The design at size 1 does not already overshoot the budget (falling short of a large budget is the
    solver's to fix with more layers; overshooting at the smallest size nothing can fix)."""
    try:
        budget = engine.dry_run(design).budget
    except DesignError:
        return False
    return budget["achieved"] <= budget["target"] + budget["tolerance"]


def search(engine, root: optuna.Study) -> dict:
    name = store.phase_study_name(engine.name, PHASE)

    def candidates():
        design = supernet_design(engine)
        costs = cell_costs(engine, design)
        attrs = {"kind": "supernet", "label": "supernet", "design": design.to_dict(), "sizes": sizes(engine),
                 "target": budget_target(engine), "costs": [[l, m, c] for (l, m), c in sorted(costs.items())]}
        return [store.Candidate(0, {}, {}, attrs)]

    study = engine.work(name, 1, candidates, {"phase": PHASE}, index=1, component=PHASE, job=_job(engine))
    counted = store.stage_state(study.get_trials(deepcopy=False), 1).counted
    trial = counted.get(0)
    info = (trial.user_attrs.get("result") or {}).get("supernet") if trial is not None else None
    if info is None:
        error = trial.user_attrs.get("error") if trial is not None else None
        raise LaminaError("one-shot search: the supernet did not train" + (f": {error}" if error else ""))
    design = Design.from_dict(info["pruned"]["design"]).model_copy(update={"name": engine.name})
    return {"point": None, "label": info["pruned"]["label"], "design": design.to_dict(),
            "notes": info["pruned"]["notes"], "supernet_score": info["score"]}


def training_inputs(cfg):
    """(model inputs of the training rows, collator, EvalSet of the validation rows, fresh model) of the
    first task, exactly as `lamina.train` prepares them (the task's kind encodes, collates, scores); the
    model (its new head included) is built under the search's training seed."""
    from transformers import set_seed

    from lamina.evaluate import load_model, resolve_task, task_for_model
    from lamina.tasks.kind import EvalSet, TaskOptions

    set_seed(cfg.seed)
    spec, path = resolve_task(cfg.tasks[0], cfg.data_for(0))
    spec = task_for_model(spec, cfg.model)
    kind = spec.type
    train_examples, eval_examples, _ = kind.training_data(spec, path, cfg.train_limit, cfg.eval_limit)
    options = TaskOptions(max_length=cfg.max_length, batch_size=2 * cfg.batch_size)
    model, tokenizer = load_model(cfg.model, spec)
    options.model_config = model.config
    kind.prepare_model(model, tokenizer, spec, train_examples, options)  # e.g. a regression head's bias
    train_features = kind.features(spec, train_examples, tokenizer, options, train=True)
    eval_features = kind.features(spec, eval_examples, tokenizer, options, train=False)
    evaluation = EvalSet(spec, eval_examples, eval_features, tokenizer, options)
    return kind.model_inputs(train_features), kind.collator(tokenizer, model), evaluation, model


def _job(engine):
    """Train the supernet (on the first task), prune its gates to a design; the trial's value is the
    supernet's dev score and its result holds the gates, the trajectory and the pruned design."""

    def job(trial, frozen, folder, progress):
        from lamina.search import supernet
        from lamina.train import PEFT_LR

        cfg = engine.config
        inputs, collate, evaluation, model = training_inputs(cfg)
        design = Design.from_dict(frozen.user_attrs["design"])
        costs = {(l, m): c for l, m, c in frozen.user_attrs["costs"]}
        info = supernet.train(model, design, costs, frozen.user_attrs["target"], inputs, collate, evaluation,
                              epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr or PEFT_LR, alpha_lr=cfg.alpha_lr,
                              penalty=cfg.penalty, seed=cfg.seed, progress=progress)
        values = {(g["layer"], g["method"]): g["gate"] for g in info["gates"]}
        pruned, kept, notes = prune(engine, values, costs)
        report = engine.dry_run(pruned)
        info["pruned"] = {"design": pruned.to_dict(), "label": label(pruned), "kept": [list(c) for c in kept],
                          "notes": notes, "budget": report.budget, "sized_design": report.design.to_dict()}
        progress.setdefault("extra", {})["supernet"] = info
        return info["score"], {cfg.tasks[0]: info["score"]}

    return job
