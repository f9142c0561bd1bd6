"""`lamina suggest`: which method in which layer, from a short probe on the user's own training data.

    suggestion = lamina.suggest(model, "sst2", data_dir, budget="0.5%")
    suggestion.design              # an ordinary Design, sized to the budget by the solver
    suggestion.save("runs/sst2-suggest")   # design.yaml, signals.json, suggest.md, heatmap.png

and, in a training run, the design string `auto:budget=0.5%[,methods=lora+adapter,probe_steps=N,seed=S,
signal=fisher,prior=none]`: the probe runs on the run's own tokenised training data (same batch size and
max length), at most 2 % of the run's planned optimizer steps, and its evidence goes to
`<output_dir>/suggest/`.

Pipeline: `probe` (gradients of every candidate in every layer at the starting point) -> `allocate`
(greedy by value per parameter within the budget, grouped, solver-sized) -> `evidence` (files).
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from lamina.design import Design
from lamina.errors import DesignError, LaminaError
from lamina.suggest.allocate import PRIORS, Allocation, allocate, budget_target, parse_budget
from lamina.suggest.candidates import CANDIDATES, DEFAULT_METHODS, parse_methods
from lamina.suggest.probe import SIGNALS, ProbeResult, run_probe

PROBE_FRACTION = 0.02  # the probe never takes more than 2 % of the run's planned optimizer steps
DEFAULT_EPOCHS = 3  # `lamina train`'s default: what a standalone suggestion plans for without --for-steps
FOLDER = "suggest"  # <output_dir>/suggest/ in a training run
AUTO_KEYS = ("budget", "methods", "probe_steps", "seed", "signal", "prior")

__all__ = ["CANDIDATES", "DEFAULT_METHODS", "PROBE_FRACTION", "Suggestion", "is_auto", "parse_auto",
           "planned_steps", "probe_steps_for", "suggest", "suggest_from_batches", "suggest_for_run"]


@dataclass
class Suggestion:
    """A suggested design with its evidence. `save(folder)` writes design.yaml, signals.json,
    suggest.md and heatmap.png."""

    design: Design
    probe: ProbeResult
    allocation: Allocation
    report: object  # lamina Report of the design on the model (dry run)
    options: dict
    timing: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def probe_fraction(self) -> float:
        planned = self.options.get("planned_steps")
        return self.probe.steps / planned if planned else 0.0

    def probe_record(self) -> dict:
        """The probe's cost, as results.json records it under "suggest"."""
        return {"steps": self.probe.steps, "examples": self.probe.examples,
                "planned_steps": self.options.get("planned_steps"), "fraction": round(self.probe_fraction(), 6),
                "batch_size": self.options.get("batch_size"), "max_length": self.options.get("max_length"),
                "sizes": dict(self.probe.sizes), **{k: round(v, 3) for k, v in self.timing.items()}}

    def signals(self) -> dict:
        from lamina.suggest.evidence import signals_json

        return signals_json(self)

    def table(self) -> str:
        """The per-layer table of value per parameter and the choice, then the design's parameter table."""
        from lamina.suggest.evidence import table

        return table(self) + "\n\n" + self.report.table()

    def save(self, folder) -> Path:
        from lamina.suggest.evidence import write

        return write(self, folder)


# --------------------------------------------------------------------------- options


def is_auto(design) -> bool:
    return isinstance(design, str) and design.strip().split(":", 1)[0].strip() == "auto"


def parse_auto(text: str) -> dict:
    """'auto:budget=0.5%,methods=lora+adapter,probe_steps=8,seed=1' -> options (defaults filled in)."""
    name, _, rest = text.strip().partition(":")
    if name.strip() != "auto":
        raise DesignError(f"'{text}' is not an auto design (auto:budget=0.5%,...)")
    options = {"budget": "0.5%", "methods": None, "probe_steps": None, "seed": None, "signal": "fisher", "prior": "none"}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or key not in AUTO_KEYS or not value:
            raise DesignError(f"auto: '{item}' is not one of {', '.join(k + '=...' for k in AUTO_KEYS)}")
        if key in ("probe_steps", "seed"):
            try:
                options[key] = int(value)
            except ValueError:
                raise DesignError(f"auto.{key}: '{value}' is not an integer") from None
        else:
            options[key] = value
    return check_options(options)


def check_options(options: dict) -> dict:
    parse_budget(options["budget"])  # checked here, before any model loads or any probe is planned
    options["methods"] = parse_methods(options["methods"])
    if options["signal"] not in SIGNALS:
        raise DesignError(f"signal: unknown signal '{options['signal']}' (known: {', '.join(SIGNALS)})")
    if options["prior"] not in PRIORS:
        raise DesignError(f"prior: unknown prior '{options['prior']}' (known: {', '.join(PRIORS)})")
    if options.get("probe_steps") is not None and options["probe_steps"] < 1:
        raise DesignError(f"probe_steps must be >= 1, got {options['probe_steps']}")
    return options


def planned_steps(examples: int, batch_size: int, *, epochs: float = DEFAULT_EPOCHS, max_steps: int | None = None,
                  grad_accum: int = 1, world_size: int = 1) -> int:
    """Optimizer steps a Trainer run will take (its own arithmetic: batches per epoch // accumulation)."""
    if max_steps:
        return int(max_steps)
    batches = math.ceil(examples / (batch_size * world_size))
    return math.ceil(epochs * max(batches // grad_accum, 1))


def probe_steps_for(planned: int | None, requested: int | None = None) -> int:
    """Probe mini-batches: `requested`, or 2 % of `planned` optimizer steps (floored); never more than
    2 % of `planned` when a run is planned."""
    if planned is None:
        if requested is None:
            raise DesignError("give the probe length (probe steps) or the training run's steps it prepares")
        return requested
    cap = math.floor(PROBE_FRACTION * planned)
    if requested is not None and requested > cap:
        raise DesignError(f"probe_steps: {requested} is more than 2 % of the {planned:,} planned optimizer "
                          f"steps (at most {cap})")
    if cap < 1:
        raise DesignError(f"the run plans {planned:,} optimizer steps; 2 % of that is less than one probe batch "
                          "(train longer, or run `lamina suggest --probe-steps N` and train its design.yaml)")
    return requested or cap


# --------------------------------------------------------------------------- the three entry points


def suggest_from_batches(model, batches, budget="0.5%", *, methods=None, seed: int = 0, signal: str = "fisher",
                         prior: str = "none", options: dict | None = None) -> Suggestion:
    """The core: probe `model` (a fresh copy; left as it was) on `batches` (dicts of tensors with labels),
    allocate `budget` (a count or a percentage of the base without its head) and return the suggestion."""
    import lamina

    options = check_options({**(options or {}), "budget": budget, "methods": methods, "seed": seed,
                             "signal": signal, "prior": prior})
    target = budget_target(model, budget)
    started, cpu = time.perf_counter(), time.process_time()
    with _seeded(seed):
        result = run_probe(model, batches, options["methods"], budget, seed=seed, target_count=target)
    timing = {"probe_wall_s": time.perf_counter() - started, "probe_cpu_s": time.process_time() - cpu}
    alloc = allocate(result, model, target, budget, signal=signal, prior=prior)
    report = lamina.apply(model, alloc.design, dry_run=True)
    timing.update(wall_s=time.perf_counter() - started, cpu_s=time.process_time() - cpu)
    options.setdefault("planned_steps", None)
    return Suggestion(alloc.design, result, alloc, report, options, timing, result.notes + alloc.notes)


def suggest(model, task, data_dir=None, budget="0.5%", *, methods=None, probe_steps: int | None = None,
            for_steps: int | None = None, seed: int = 0, batch_size: int = 32, max_length: int = 128,
            doc_stride: int = 128, train_limit: int | None = None, signal: str = "fisher", prior: str = "none",
            output_dir=None) -> Suggestion:
    """Suggest a design for training `model` (HF id or folder) on `task`'s training split in `data_dir`.
    The probe plans for a run of `for_steps` optimizer steps (default: `lamina train`'s 3 epochs at
    `batch_size`) and takes 2 % of them, or exactly `probe_steps` batches. Saves to `output_dir` if given."""
    from lamina.evaluate import check_not_empty, load_model, load_split, resolve_task

    started, cpu = time.perf_counter(), time.process_time()
    options = check_options({"budget": budget, "methods": methods, "probe_steps": probe_steps, "seed": seed,
                             "signal": signal, "prior": prior})
    spec, path = resolve_task(task, data_dir)
    examples, _ = load_split(spec, path, "train", train_limit)
    check_not_empty(examples, f"{spec.name} train split")
    with _seeded(seed):  # a fresh task head is initialised here: the same seed gives the same head
        model_obj, tokenizer = load_model(model, spec)
    features = _features(spec, examples, tokenizer, max_length, doc_stride, model_obj)
    if for_steps is not None and for_steps < 1:
        raise LaminaError(f"for_steps must be >= 1, got {for_steps}")
    if probe_steps is not None and for_steps is None:  # an explicit probe length, no run to cap it
        planned, steps = None, probe_steps
    else:
        planned = for_steps if for_steps is not None else planned_steps(len(features), batch_size)
        steps = probe_steps_for(planned, probe_steps)
    s = _run(model_obj, spec.type.collator(tokenizer, model_obj), features, steps, options, dict(
        model=str(model), task=spec.name, data=str(path), batch_size=batch_size, max_length=max_length,
        planned_steps=planned, train_examples=len(examples)), started, cpu)
    if output_dir is not None:
        s.save(output_dir)
    return s


def suggest_for_run(design, model_name_or_path, spec, train_examples, output_dir, *, batch_size: int,
                    max_length: int, doc_stride: int, epochs: float, max_steps: int | None, grad_accum: int,
                    seed: int, resume: bool = False):
    """lamina.train's hook: an `auto:` design becomes the suggested Design (probe on this run's training
    examples, tokenised as the run tokenises them, seeded with the run's seed unless `auto:seed=` says
    otherwise; evidence in <output_dir>/suggest/); anything else passes through. Returns (design, the
    record for results.json["suggest"] or None)."""
    if not is_auto(design):
        return design, None
    from lamina.evaluate import load_model

    started, cpu = time.perf_counter(), time.process_time()
    options = parse_auto(design)
    options["seed"] = seed if options["seed"] is None else options["seed"]
    folder = Path(output_dir) / FOLDER
    if resume and (folder / "signals.json").is_file():  # a resumed run keeps the design its checkpoints have
        saved = json.loads((folder / "signals.json").read_text(encoding="utf-8"))
        design = Design.from_file(folder / "design.yaml")
        return design, _record(saved["probe"], design, saved["budget"], design_string=saved["options"]["auto"],
                               folder=folder, reused=True)
    with _seeded(options["seed"]):  # as in `suggest`: the fresh head is part of what the seed fixes
        model, tokenizer = load_model(model_name_or_path, spec)
    features = _features(spec, train_examples, tokenizer, max_length, doc_stride, model)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    planned = planned_steps(len(features), batch_size, epochs=epochs, max_steps=max_steps, grad_accum=grad_accum,
                            world_size=world)
    steps = probe_steps_for(planned, options["probe_steps"])
    s = _run(model, spec.type.collator(tokenizer, model), features, steps, options, dict(
        model=str(model_name_or_path), task=spec.name, batch_size=batch_size, max_length=max_length,
        planned_steps=planned, train_examples=len(train_examples), auto=design.strip()), started, cpu)
    if int(os.environ.get("RANK", "0")) == 0:
        s.save(folder)
    return s.design, _record(s.probe_record(), s.design, s.allocation.budget, design_string=design.strip(),
                             folder=folder, reused=False)


# --------------------------------------------------------------------------- helpers


def _record(probe: dict, design: Design, budget, *, design_string: str, folder: Path, reused: bool) -> dict:
    """results.json["suggest"]: the probe's cost (steps, planned_steps, fraction, wall_s, cpu_s,
    probe_wall_s, probe_cpu_s, ...), the auto string, the evidence folder, the design and its budget
    report. A resumed run reuses the saved suggestion and reports the cost it had (`reused`: true)."""
    return {**probe, "auto": design_string, "folder": str(folder), "design": design.to_dict(), "budget": budget,
            "reused": reused}


def _features(spec, examples, tokenizer, max_length: int, doc_stride: int, model) -> list[dict]:
    """The probe's features, checked like training's against the model (token ids within its embeddings)."""
    from lamina.evaluate import encode
    from lamina.tasks.kind import TaskOptions

    options = TaskOptions(max_length=max_length, doc_stride=doc_stride, model_config=model.config)
    features = encode(spec, examples, tokenizer, max_length, doc_stride, train=True, options=options)
    if not features:
        raise LaminaError(f"{spec.name} train split: no examples to probe on")
    return features


def probe_batches(features: list[dict], tokenizer, steps: int, batch_size: int, seed: int, collate=None) -> list[dict]:
    """`steps` padded mini-batches drawn without replacement in a seeded order (reshuffled when the
    data runs out)."""
    from transformers import DataCollatorWithPadding

    collate = collate or DataCollatorWithPadding(tokenizer)  # the task kind's collator when given
    rng = random.Random(seed)
    order: list[int] = []
    batches = []
    for _ in range(steps):
        while len(order) < batch_size:
            more = list(range(len(features)))
            rng.shuffle(more)
            order += more
        picked, order = order[:batch_size], order[batch_size:]
        batches.append(collate([features[i] for i in picked]))
    return batches


def _run(model, collate, features, steps: int, options: dict, info: dict, started: float, cpu: float) -> Suggestion:
    batches = probe_batches(features, None, steps, info["batch_size"], options["seed"], collate=collate)
    s = suggest_from_batches(model, batches, options["budget"], methods=options["methods"], seed=options["seed"],
                             signal=options["signal"], prior=options["prior"], options={**options, **info})
    s.timing["wall_s"] = time.perf_counter() - started
    s.timing["cpu_s"] = time.process_time() - cpu
    return s


class _seeded:
    """Seed torch for the probe (its modules' init) without disturbing the caller's random state."""

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self):
        import torch

        self._fork = torch.random.fork_rng(devices=[])
        self._fork.__enter__()
        torch.manual_seed(self.seed)
        return self

    def __exit__(self, *exc):
        return self._fork.__exit__(*exc)


class _CallableModule(type(os)):
    """`lamina.suggest` is this package and, called, the `suggest` function: `lamina.suggest(model, task,
    ...)` then works whether `lamina.suggest` resolved to the function or to the package (which one
    depends on import order, as the package and its main function share the name)."""

    def __call__(self, *args, **kwargs):
        return suggest(*args, **kwargs)


import sys as _sys  # noqa: E402

_sys.modules[__name__].__class__ = _CallableModule
