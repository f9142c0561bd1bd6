"""Progressive greedy refinement of a design space (Chen et al., ICLR 2023), one component per stage.

Stage k studies the k-th component of `space.stages` (default grouping -> allocation -> tunable ->
strategies): it samples N designs in which the components fixed by earlier stages keep their winning
value, the studied component varies (every choice in turn for choice analysis) and the components not yet
fixed are drawn at random; it trains each design briefly (`lamina.train.train`: epochs, a train subset,
an eval subset, one or several tasks) and scores it (the mean of the tasks' main metrics); then it
compares the score distributions per choice (`analysis.decide`) and fixes the winner.

Every worker process runs `Search.run()` on the same storage and study name: the candidates of a stage
are the same everywhere (seeded), they are enqueued once, each worker trains whatever is waiting, and
whichever worker finds a stage complete computes its winner from the stored trials (deterministic), so
they all agree. See `lamina.search.store` for the concurrency and crash-recovery rules.

Optional pruning (`prune=True`): every evaluation (each `eval_steps` optimizer steps, or each epoch) is
reported to Optuna, and Optuna's `SuccessiveHalvingPruner` (asynchronous successive halving; min resource
= the first evaluation step, reduction factor `reduction_factor`) stops trials that trail their stage's
peers at a rung. The final evaluation of a trial is never pruned (the training is already paid for).

Outputs (`output/`): `design.yaml` (the final design: budget-sized, what `lamina train --design` takes),
`design.sized.yaml` (the same design with the sizes the solver picks for the search model),
`search.json` (the record: settings, every stage's trials, statistics and winner, compute spent),
`trials.log` (one JSON line per trial execution on this machine), `trials/` (each trial's run folder).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from lamina.design import Design, DesignError
from lamina.errors import LaminaError
from lamina.search import store
from lamina.search.analysis import decide, to_plain, to_value
from lamina.search.record import build_record, stage_rows
from lamina.search.space import COMPONENTS, Point, SearchSpace, choice_label, subset_label
from lamina.util import atomic_write_text


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a search's results; a worker joining a study must bring the same."""

    model: str
    tasks: tuple[str, ...]
    space: SearchSpace
    data: tuple[str | None, ...] = ()
    trials_per_stage: int = 8
    epochs: float = 1.0
    train_limit: int | None = None
    eval_limit: int | None = None
    max_length: int = 128
    batch_size: int = 32
    lr: float | None = None
    seed: int = 42
    eval_steps: int | None = None
    prune: bool = False
    reduction_factor: int = 2

    def __post_init__(self):
        if not self.tasks:
            raise LaminaError("name at least one task")
        if self.data and len(self.data) not in (1, len(self.tasks)):
            raise LaminaError(f"give one data folder for all tasks or one per task ({len(self.tasks)}), not {len(self.data)}")
        if self.trials_per_stage < 1:
            raise LaminaError(f"trials per stage must be >= 1, got {self.trials_per_stage}")
        if self.reduction_factor < 2:
            raise LaminaError(f"reduction factor must be >= 2, got {self.reduction_factor}")

    def data_for(self, i: int) -> str | None:
        if not self.data:
            return None
        return self.data[0] if len(self.data) == 1 else self.data[i]

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["space"] = self.space.to_dict()
        out["tasks"], out["data"] = list(self.tasks), list(self.data)
        return json.loads(json.dumps(out))

    @classmethod
    def from_dict(cls, data: dict) -> "SearchConfig":
        data = dict(data)
        data["space"] = SearchSpace.from_dict(data["space"])
        data["tasks"], data["data"] = tuple(data["tasks"]), tuple(data.get("data") or ())
        return cls(**data)


Trainer = Callable[..., dict]


class Search:
    """One worker of a search (several may run at once on one storage/study)."""

    def __init__(self, config: SearchConfig, output: str | Path, storage: str | None = None, study: str = "search",
                 heartbeat: int = 10, grace: int | None = None, poll: float = 1.0, repair_after: float | None = None,
                 trainer: Trainer | None = None, say: Callable[[str], None] | None = None):
        self.config, self.space = config, config.space
        self.output = Path(output).expanduser().resolve()
        self.url = store.storage_url(storage, self.output)
        self._storage, self._storage_args = None, (heartbeat, grace)
        self.name = study
        self.poll = poll
        self.repair_after = repair_after if repair_after is not None else max(60.0, 2.0 * (grace or 3 * heartbeat))
        self.trainer = trainer
        self.say = say or (lambda text: print(text, file=sys.stderr, flush=True))
        self._meta = None
        self._reports: dict = {}

    @property
    def storage(self):
        """The study store, opened (and, for a new SQLite file, created) on first use: after `preflight`."""
        if self._storage is None:
            self._storage = store.open_storage(self.url, *self._storage_args)
        return self._storage

    # --- the model, as far as sampling needs it (meta device: shapes only) -----------------------
    def _model_info(self):
        if self._meta is None:
            from lamina.arch import config_from, map_model
            from lamina.evaluate import meta_model_for, resolve_task

            spec, _ = resolve_task(self.config.tasks[0], self.config.data_for(0))
            model = meta_model_for(spec, config_from(self.config.model))
            self._meta = (model, map_model(model).num_layers)
        return self._meta

    def dry_run(self, design: Design):
        """The solver's sizes and budget report for a design on the search model (no weights)."""
        import lamina

        key = design.to_json()
        if key not in self._reports:
            self._reports[key] = lamina.apply(self._model_info()[0], design, dry_run=True)
        return self._reports[key]

    def _feasible(self, point: Point) -> bool:
        try:
            report = self.dry_run(self.space.design(point, self._model_info()[1]))
        except DesignError:
            return False
        budget = report.budget
        return budget is not None and abs(budget["achieved"] - budget["target"]) <= budget["tolerance"]

    def design_of(self, point: Point, name: str | None = None) -> Design:
        return self.space.design(point, self._model_info()[1], name=name)

    def preflight(self) -> None:
        """Fail early, as one line, on what would make every trial fail: unknown task, missing data,
        unloadable model config, a budget no design of the space can meet."""
        from lamina.evaluate import check_model, resolve_task

        store.check_sqlite_file(self.url)
        for i, task in enumerate(self.config.tasks):
            spec, _ = resolve_task(task, self.config.data_for(i))
            check_model(self.config.model, spec, self.config.max_length)
        num_layers = self._model_info()[1]
        if num_layers < self.space.groups:
            raise LaminaError(f"space.groups: {self.space.groups} groups need at least {self.space.groups} layers; "
                              f"this model has {num_layers}")
        self.space.sample(1, self.space.stages[0], {}, feasible=self._feasible, attempts=50)

    # --- candidates --------------------------------------------------------------------------------
    def candidates(self, component: str, fixed: dict) -> list[store.Candidate]:
        points = self.space.sample(self.config.trials_per_stage, component, fixed, feasible=self._feasible)
        choices = {"grouping": list(self.space.grouping), "allocation": list(self.space.allocation),
                   "tunable": [choice_label("tunable", c) for c in self.space.tunable_choices()],
                   **{f"G{g}": ["-"] + [subset_label(s) for s in self.space.strategy_subsets()]
                      for g in range(1, self.space.groups + 1)}}
        out = []
        for i, point in enumerate(points):
            design = self.design_of(point)
            report = self.dry_run(design)
            params = {"grouping": point.grouping, "allocation": point.allocation,
                      "tunable": choice_label("tunable", point.tunable),
                      **{f"G{g}": subset_label(point.strategies[g - 1]) if g in point.tunable else "-"
                         for g in range(1, self.space.groups + 1)}}
            attrs = {"point": point.to_dict(), "label": point.label(), "design": design.to_dict(),
                     "sized_design": report.design.to_dict(), "budget": report.budget,
                     "trainable": report.trainable, "trainable_without_head": report.trainable - report.head_trainable,
                     "stored": report.stored}
            out.append(store.Candidate(i, params, store.categorical(params, choices), attrs))
        return out

    # --- the worker ----------------------------------------------------------------------------------
    def run(self) -> dict:
        """Work until every stage has a winner, then write the outputs; returns the record."""
        root = store.open_root(self.storage, self.name, self.config.to_dict())
        self._journal("worker", study=self.name, storage=store.redact(self.url))
        fixed: dict = {}
        for k, component in enumerate(self.space.stages, 1):
            winner = root.user_attrs.get(f"winner.{component}")
            if winner is None:
                value = self._stage(k, component, fixed, root)
                root.set_user_attr(f"winner.{component}", to_plain(value))
                winner = to_plain(value)
            fixed[component] = to_value(component, winner)
            self.say(f"[stage {k}/{len(self.space.stages)} {component}] winner: {choice_label(component, fixed[component])}")
        record = self.record()
        self.write_outputs(record)
        return record

    def _pruner(self):
        if not self.config.prune:
            return optuna.pruners.NopPruner()
        # rungs at eval_steps * eta^k; per-epoch evaluations report at their global step (every rung
        # below it is decided at once), so pruning by epochs needs several epochs
        first = self.config.eval_steps or 1
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=self.config.reduction_factor)

    def _stage(self, k: int, component: str, fixed: dict, root: optuna.Study):
        if self.space.analysis(component) == "choice" and len(self.space.choices(component)) == 1:
            return self.space.choices(component)[0]  # fixed by the space itself: nothing to compare
        n = self.config.trials_per_stage
        cache: dict = {}

        def cands():
            if "c" not in cache:
                cache["c"] = self.candidates(component, fixed)
            return cache["c"]

        name = store.stage_study_name(self.name, k, component)
        attrs = {"stage": k, "component": component, "fixed": {c: to_plain(v) for c, v in fixed.items()}, "candidates": n}
        study, created = store.open_stage(self.storage, name, cands, attrs, pruner=self._pruner())
        if created:
            self.say(f"[stage {k}/{len(self.space.stages)} {component}] {n} candidates enqueued in study '{name}'")
        study_id = self.storage.get_study_id_from_name(name)
        orphaned: dict[int, float] = {}
        while True:
            store.fail_stale(study)
            trial_id = store.pop_waiting(self.storage, study_id)
            if trial_id is not None:
                self._execute(study, trial_id, k, component)
                continue
            trials = study.get_trials(deepcopy=False)
            state = store.stage_state(trials, n)
            if state.complete:
                break
            now = time.monotonic()
            orphaned = {c: orphaned.get(c, now) for c in state.orphans}
            for c, since in orphaned.items():
                if now - since > self.repair_after:
                    self.say(f"[stage {k} {component}] candidate {c} has no live trial: enqueueing it again")
                    store.repair(study, trials, cands()[c])
                    orphaned[c] = now
            time.sleep(self.poll)
        rows = stage_rows(study.get_trials(deepcopy=False), n)
        value, _, notes = decide(component, rows, self.space, fixed)
        for note in notes:
            self.say(f"[stage {k} {component}] {note}")
        if value is None:
            errors = [t.user_attrs.get("error") for t in study.get_trials(deepcopy=False) if t.user_attrs.get("error")]
            raise LaminaError(f"stage {component}: no trial produced a score" + (f"; first error: {errors[0]}" if errors else ""))
        if not self._value_feasible(component, value, fixed):
            best = max((r for r in rows if r.score is not None), key=lambda r: (r.score, -r.trial))
            note = (f"{choice_label(component, value)} leaves no design within the budget; fixed the value of the best "
                    f"trial ({best.trial}) instead: {choice_label(component, best.point.value(component))}")
            self.say(f"[stage {k} {component}] {note}")
            root.set_user_attr(f"note.{component}", note)
            value = best.point.value(component)
        return value

    def _value_feasible(self, component: str, value, fixed: dict) -> bool:
        """Whether some design with `value` (and the earlier winners) meets the budget."""
        from lamina.search.space import SpaceError

        chosen = {**fixed, component: value}
        if all(c in chosen for c in COMPONENTS):
            point = Point(**chosen)
            return point.trains_sized() and self._feasible(point)
        following = next(c for c in self.space.stages if c not in chosen)
        try:
            self.space.sample(1, following, chosen, feasible=self._feasible, attempts=50)
        except SpaceError:
            return False
        return True

    # --- one trial -------------------------------------------------------------------------------------
    def _journal(self, event: str, **info) -> None:
        self.output.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"event": event, "time": round(time.time(), 3), "pid": os.getpid(),
                           "host": socket.gethostname(), **info})
        with open(self.output / "trials.log", "a", encoding="utf-8") as handle:  # O_APPEND: whole lines
            handle.write(line + "\n")

    def _execute(self, study: optuna.Study, trial_id: int, k: int, component: str) -> None:
        frozen = self.storage.get_trial(trial_id)
        cand, number = frozen.user_attrs.get("candidate"), frozen.number
        where = dict(study=study.study_name, stage=k, component=component, candidate=cand, trial=number)
        dup = store.duplicate_of(study.get_trials(deepcopy=False), frozen)
        if dup is not None:
            self.storage.set_trial_user_attr(trial_id, "duplicate_of", dup)
            self.storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
            self._journal("duplicate", duplicate_of=dup, **where)
            return
        trial = optuna.Trial(study, trial_id)
        folder = self.output / "trials" / f"stage{k}-{component}" / f"t{number:03d}-c{cand}"
        self._journal("start", **where)
        started = time.time()
        progress = {"steps": 0, "planned": 0}
        try:
            with store.Heartbeat(self.storage, trial_id):
                scores, _, _ = self._train(trial, Design.from_dict(frozen.user_attrs["design"]), folder, progress)
            value = sum(scores.values()) / len(scores)
            if self._settle(study, trial, TrialState.COMPLETE, value, started, progress, where, scores=scores):
                self.say(f"[stage {k} {component}] trial {number} (candidate {cand}) {frozen.user_attrs['label']}: "
                         f"{value:.4f} ({time.time() - started:.1f} s)")
        except optuna.TrialPruned:
            shutil.rmtree(folder, ignore_errors=True)
            if self._settle(study, trial, TrialState.PRUNED, None, started, progress, where):
                self.say(f"[stage {k} {component}] trial {number} (candidate {cand}) pruned at step {progress['steps']}")
        except (KeyboardInterrupt, SystemExit):
            raise  # left RUNNING: its heartbeat stops, it goes stale and is retried on resume
        except Exception as err:
            import traceback

            message = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "error.txt").write_text(traceback.format_exc())
            if self._settle(study, trial, TrialState.FAIL, None, started, progress, where, error=message):
                self.say(f"[stage {k} {component}] trial {number} (candidate {cand}) failed: {message} "
                         f"(traceback: {folder / 'error.txt'})")

    def _settle(self, study, trial, state, value, started, progress, where, **extra) -> bool:
        """Record what the trial did and finish it. False (journal: discarded) when another worker has
        already failed it as stale (this worker was too slow to beat): its retry is the one that counts."""
        try:
            if "error" in extra:
                trial.set_user_attr("error", extra["error"])  # its own attr: store.is_terminal_fail looks for it
            trial.set_user_attr("result", {
                "steps": progress["steps"], "planned_steps": progress["planned"], "seconds": round(time.time() - started, 2),
                "worker": f"{socket.gethostname()}:{os.getpid()}", **progress.get("extra", {}), **extra})
            if state == TrialState.COMPLETE:
                study.tell(trial, value)
            else:
                study.tell(trial, state=state)
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            self._journal("discarded", reason="already failed as stale by another worker", **where)
            return False
        event = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}[state]
        self._journal(event, **({"score": value} if value is not None else {}), **where, **extra)
        return True

    def _train(self, trial: optuna.Trial, design: Design, folder: Path, progress: dict):
        """Train the design on every task; returns (scores per task, steps trained, steps planned)."""
        from lamina.evaluate import resolve_task

        trainer = self.trainer
        if trainer is None:
            from lamina.train import train as trainer
        cfg = self.config
        scores = {}
        for i, task in enumerate(cfg.tasks):
            spec, _ = resolve_task(task, cfg.data_for(i))
            offset = progress["steps"]
            callback = _reporter(trial, spec.main_metric, offset, cfg.prune, progress)
            out = folder / task if len(cfg.tasks) > 1 else folder
            with _quiet():
                results = trainer(cfg.model, task, design, cfg.data_for(i), str(out), lr=cfg.lr, epochs=cfg.epochs,
                                  batch_size=cfg.batch_size, max_length=cfg.max_length, seed=cfg.seed,
                                  train_limit=cfg.train_limit, eval_limit=cfg.eval_limit, eval_steps=cfg.eval_steps,
                                  progress=False, callbacks=[callback])
            scores[task] = float(results["main_score"])
            progress["steps"] = offset + int(results.get("global_step", 0))
            if i == 0:
                extra = progress.setdefault("extra", {})
                for key in ("trainable_params", "stored_params"):
                    if key in results:
                        extra[key] = results[key]
                report = results.get("params_report") or {}
                if report.get("budget"):
                    extra["train_budget"] = report["budget"]  # the budget report of what actually trained
        return scores, progress["steps"], progress["planned"]

    # --- the record ------------------------------------------------------------------------------------
    def record(self) -> dict:
        rec = build_record(self.storage, self.name, storage_label=store.redact(self.url))
        if rec.get("final"):
            point = Point.from_dict(rec["final"]["point"])
            design = self.design_of(point, name=self.name)
            rec["final"]["design"] = design.to_dict()
            rec["final"]["sized_design"] = self.dry_run(design).design.to_dict()
            rec["final"]["budget"] = self.dry_run(design).budget
        return rec

    def write_outputs(self, record: dict) -> None:
        import yaml

        self.output.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.output / "search.json", json.dumps(record, indent=2, default=str) + "\n")
        if record.get("final"):
            for name, key in (("design.yaml", "design"), ("design.sized.yaml", "sized_design")):
                atomic_write_text(self.output / name, yaml.safe_dump(record["final"][key], sort_keys=False))


@contextlib.contextmanager
def _quiet():
    """A trial's Trainer prints its log dicts and loading bars; its train.log keeps them instead."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _reporter(trial: optuna.Trial, metric: str, offset: int, prune: bool, progress: dict):
    """A TrainerCallback: report every evaluation to Optuna; with `prune`, stop a trailing trial."""
    from transformers import TrainerCallback

    reported: set[int] = set()

    class Report(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            progress["planned"] = progress.get("planned", 0) + state.max_steps

        def on_step_end(self, args, state, control, **kwargs):
            progress["steps"] = offset + state.global_step

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            value = (metrics or {}).get(f"eval_{metric}")
            if value is None:
                return
            step = offset + state.global_step
            if step in reported:  # the re-evaluation of the restored best checkpoint after training
                return
            reported.add(step)
            trial.report(float(value), step)
            if prune and state.global_step < state.max_steps and trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step}")

    return Report()
