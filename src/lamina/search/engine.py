"""The search engine: one worker of a search, whatever its strategy, on a shared study store.

`Search.run()` opens the root study (the settings), runs the strategy (`stages`: greedy, `joint`,
`oneshot`), which ends with a final design, then trains that design once under the same settings (the
*final* study: the design's retrained score and the reference for the compute ledger), and writes the
outputs. Every phase is an Optuna study whose trials are pre-planned candidates (`store`): enqueued once
by the study's creator, claimed atomically by whichever worker is free, retried when a worker dies,
counted exactly once. Which worker finishes a phase does not matter: everything that follows a phase
(a stage's winner, the joint search's best design, the one-shot search's pruned design) is computed from
the stored trials, identically everywhere.

Outputs (`output/`): `design.yaml` (the final design: budget-sized, what `lamina train --design` takes),
`design.sized.yaml` (with the sizes the solver picks for the search model), `search.json` (the record:
settings, every phase's trials, the final training, the compute ledger), `trials.log` (one JSON line per
trial execution on this machine), `trials/` (each trial's run folder).
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
from pathlib import Path
from typing import Callable

import optuna
from optuna.trial import TrialState

from lamina import checks
from lamina.design import Design, DesignError
from lamina.errors import LaminaError
from lamina.search import store
from lamina.search.config import SearchConfig
from lamina.search.space import Point
from lamina.util import atomic_write_text

Trainer = Callable[..., dict]
FINAL = "final"


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
    def model_info(self):
        """(meta model with the first task's head, number of layers)."""
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
            self._reports[key] = lamina.apply(self.model_info()[0], design, dry_run=True)
        return self._reports[key]

    def within_budget(self, design: Design) -> bool:
        try:
            budget = self.dry_run(design).budget
        except DesignError:
            return False
        return budget is not None and abs(budget["achieved"] - budget["target"]) <= budget["tolerance"]

    def feasible(self, point: Point) -> bool:
        return self.within_budget(self.space.design(point, self.model_info()[1]))

    def design_of(self, point: Point, name: str | None = None) -> Design:
        return self.space.design(point, self.model_info()[1], name=name)

    def design_attrs(self, design: Design, point: Point | None = None, label: str | None = None) -> dict:
        """What a trial of `design` records before it trains: the design, its sizes on the search model and
        the budget report (so every design's budget can be checked from the record)."""
        report = self.dry_run(design)
        return {"point": point.to_dict() if point else None, "label": label or (point.label() if point else design.name),
                "design": design.to_dict(), "sized_design": report.design.to_dict(), "budget": report.budget,
                "trainable": report.trainable, "trainable_without_head": report.trainable - report.head_trainable,
                "stored": report.stored}

    def preflight(self) -> None:
        """Fail early, as one line, on what would make every trial fail: unknown task, missing data,
        unloadable model config, a budget no design of the space can meet."""
        from lamina.evaluate import check_model, check_not_empty, resolve_task
        from lamina.search.strategies import strategy_module

        store.check_sqlite_file(self.url)
        for i, task in enumerate(self.config.tasks):
            spec, path = resolve_task(task, self.config.data_for(i))
            check_model(self.config.model, spec, self.config.max_length)
            # the rows every trial reads (a bad label would otherwise fail trial by trial, files left behind)
            train, dev, _ = spec.type.training_data(spec, path, self.config.train_limit, self.config.eval_limit)
            for rows, split in ((train, "train"), (dev, "validation")):
                check_not_empty(rows, f"{spec.name} {split} split")
                spec.type.check_labelled(spec, rows, f"{spec.name} {split} split")
        checks.load_tokenizer(self.config.model)  # every trial loads it: a broken one fails here, not in each
        num_layers = self.model_info()[1]
        if num_layers < self.space.groups and self.config.strategy != "one-shot":
            raise LaminaError(f"space.groups: {self.space.groups} groups need at least {self.space.groups} layers; "
                              f"this model has {num_layers}")
        strategy_module(self.config.strategy).preflight(self)

    # legacy entry point of the greedy candidates (tests and tools call it on the engine)
    def candidates(self, component: str, fixed: dict) -> list[store.Candidate]:
        from lamina.search import stages

        return stages.candidates(self, component, fixed)

    # --- the worker ----------------------------------------------------------------------------------
    def run(self) -> dict:
        """Work until the strategy has its final design and that design is trained; write the outputs and
        return the record."""
        from lamina.search.strategies import strategy_module

        root = store.open_root(self.storage, self.name, self.config.to_dict())
        self._journal("worker", study=self.name, storage=store.redact(self.url), strategy=self.config.strategy)
        final = root.user_attrs.get("final_design")
        if final is None:
            final = strategy_module(self.config.strategy).search(self, root)
            root.set_user_attr("final_design", final)
        self.say(f"[{self.config.strategy}] final design: {final['label']}")
        self.final_training(final)
        record = self.record()
        self.write_outputs(record)
        return record

    def final_training(self, final: dict) -> optuna.Study | None:
        """One training of the final design under the search's settings: its retrained score, and the
        reference the compute ledger divides by. A final design some complete trial already trained under
        exactly these settings (`final["reuse"]`: training is deterministic) is not trained again: that
        trial is its training, and its folder holds the adapter."""
        if final.get("reuse"):
            return None
        design = Design.from_dict(final["design"])
        point = Point.from_dict(final["point"]) if final.get("point") else None
        attrs = self.design_attrs(design, point, final["label"])
        cand = store.Candidate(0, {}, {}, attrs)
        return self.work(store.phase_study_name(self.name, FINAL), 1, lambda: [cand], {"phase": FINAL},
                         index=0, component=FINAL, pruning=False)

    def work(self, name: str, n: int, cands: Callable[[], list], attrs: dict, *, index: int, component: str,
             pruner=None, pruning: bool | None = None, job=None) -> optuna.Study:
        """Create-or-join the phase study `name` (the creator enqueues `cands()`), then train whatever is
        waiting until all `n` candidates are settled; repairs candidates left without a live trial."""
        cache: dict = {}

        def candidates():
            if "c" not in cache:
                cache["c"] = cands()
            return cache["c"]

        study, created = store.open_stage(self.storage, name, candidates, {**attrs, "candidates": n},
                                          pruner=pruner or optuna.pruners.NopPruner())
        if created:
            self.say(f"[{component}] {n} candidate(s) enqueued in study '{name}'")
        study_id = self.storage.get_study_id_from_name(name)
        orphaned: dict[int, float] = {}
        while True:
            store.fail_stale(study)
            trial_id = store.pop_waiting(self.storage, study_id)
            if trial_id is not None:
                self._execute(study, trial_id, index, component, pruning=self.config.prune if pruning is None else pruning,
                              job=job)
                continue
            trials = study.get_trials(deepcopy=False)
            state = store.stage_state(trials, n)
            if state.complete:
                return study
            now = time.monotonic()
            orphaned = {c: orphaned.get(c, now) for c in state.orphans}
            for c, since in orphaned.items():
                if now - since > self.repair_after:
                    self.say(f"[{component}] candidate {c} has no live trial: enqueueing it again")
                    store.repair(study, trials, candidates()[c])
                    orphaned[c] = now
            time.sleep(self.poll)

    # --- one trial -------------------------------------------------------------------------------------
    def _journal(self, event: str, **info) -> None:
        self.output.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"event": event, "time": round(time.time(), 3), "pid": os.getpid(),
                           "host": socket.gethostname(), **info})
        with open(self.output / "trials.log", "a", encoding="utf-8") as handle:  # O_APPEND: whole lines
            handle.write(line + "\n")

    def folder_of(self, index: int, component: str) -> Path:
        phase = f"stage{index}-{component}" if component in ("grouping", "allocation", "tunable", "strategies") else component
        return self.output / "trials" / phase

    def _execute(self, study: optuna.Study, trial_id: int, k: int, component: str, pruning: bool = False, job=None) -> None:
        """Run one claimed trial: `job(trial, frozen, folder, progress) -> (value, scores)` (default: train
        the trial's design); a job may raise TrialPruned. Records compute (steps, examples, CPU and wall
        seconds) whatever the outcome."""
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
        folder = self.folder_of(k, component) / f"t{number:03d}-c{cand}"
        self._journal("start", **where)
        clock = (time.time(), time.process_time())
        progress = {"steps": 0, "planned": 0, "examples": 0, "eval_examples": 0}
        job = job or self.design_job(pruning)
        try:
            with store.Heartbeat(self.storage, trial_id):
                value, scores = job(trial, frozen, folder, progress)
            label = trial.user_attrs.get("label", frozen.user_attrs.get("label"))
            if self._settle(study, trial, TrialState.COMPLETE, value, clock, progress, where, scores=scores):
                self.say(f"[{component}] trial {number} (candidate {cand}) {label}: {value:.4f} "
                         f"({time.time() - clock[0]:.1f} s)")
        except optuna.TrialPruned:
            shutil.rmtree(folder, ignore_errors=True)
            if self._settle(study, trial, TrialState.PRUNED, None, clock, progress, where):
                self.say(f"[{component}] trial {number} (candidate {cand}) pruned at step {progress['steps']}")
        except (KeyboardInterrupt, SystemExit):
            raise  # left RUNNING: its heartbeat stops, it goes stale and is retried on resume
        except Exception as err:
            import traceback

            message = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "error.txt").write_text(traceback.format_exc())
            if self._settle(study, trial, TrialState.FAIL, None, clock, progress, where, error=message):
                self.say(f"[{component}] trial {number} (candidate {cand}) failed: {message} "
                         f"(traceback: {folder / 'error.txt'})")

    def _settle(self, study, trial, state, value, clock, progress, where, **extra) -> bool:
        """Record what the trial did and finish it. False (journal: discarded) when another worker has
        already failed it as stale (this worker was too slow to beat): its retry is the one that counts."""
        try:
            if "error" in extra:
                trial.set_user_attr("error", extra["error"])  # its own attr: store.is_terminal_fail looks for it
            trial.set_user_attr("result", {
                "steps": progress["steps"], "planned_steps": progress["planned"], "examples": progress["examples"],
                "eval_examples": progress["eval_examples"], "seconds": round(time.time() - clock[0], 2),
                "cpu_s": round(time.process_time() - clock[1], 2), "worker": f"{socket.gethostname()}:{os.getpid()}",
                **progress.get("extra", {}), **extra})
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

    def design_job(self, pruning: bool):
        """The ordinary trial: train the design recorded in the trial's user attrs on every task."""

        def job(trial, frozen, folder, progress):
            design = Design.from_dict(trial.user_attrs.get("design") or frozen.user_attrs["design"])
            scores = self.train_design(trial, design, folder, progress, pruning)
            return sum(scores.values()) / len(scores), scores

        return job

    def train_design(self, trial: optuna.Trial, design: Design, folder: Path, progress: dict, pruning: bool) -> dict:
        """Train the design on every task (`lamina.train.train`, the search's settings); scores per task."""
        from lamina.evaluate import resolve_task

        trainer = self.trainer
        if trainer is None:
            from lamina.train import train as trainer
        cfg = self.config
        scores = {}
        for i, task in enumerate(cfg.tasks):
            spec, _ = resolve_task(task, cfg.data_for(i))
            offset = progress["steps"]
            callback = _reporter(trial, spec.main_metric, offset, pruning, progress, cfg.batch_size)
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
        return scores

    # --- the record ------------------------------------------------------------------------------------
    def record(self) -> dict:
        from lamina.search.record import build_record

        rec = build_record(self.storage, self.name, storage_label=store.redact(self.url))
        if rec.get("final") and "sized_design" not in rec["final"]:
            design = Design.from_dict(rec["final"]["design"])
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


def examples_seen(steps: int, dataset_size: int, batches_per_epoch: int, batch_size: int) -> int:
    """Training examples consumed by `steps` optimizer steps (one batch per step; the last batch of an
    epoch may be short): whole epochs of the dataset plus the batches of the current one."""
    if not batches_per_epoch or not dataset_size:
        return steps * batch_size
    epochs, rest = divmod(steps, batches_per_epoch)
    return epochs * dataset_size + min(rest * batch_size, dataset_size)


def _reporter(trial: optuna.Trial, metric: str, offset: int, prune: bool, progress: dict, batch_size: int):
    """A TrainerCallback: report every evaluation to Optuna (with `prune`, stop a trailing trial), and count
    the compute: optimizer steps, training examples, evaluated examples."""
    from transformers import TrainerCallback

    reported: set[int] = set()
    base = {"examples": progress.get("examples", 0)}
    data = {}

    class Report(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            progress["planned"] = progress.get("planned", 0) + state.max_steps
            loader = kwargs.get("train_dataloader")
            if loader is not None:
                accumulation = getattr(args, "gradient_accumulation_steps", 1) or 1
                data.update(size=len(loader.dataset), batches=max(len(loader) // accumulation, 1),
                            batch=loader.batch_size * accumulation if loader.batch_size else batch_size)

        def on_step_end(self, args, state, control, **kwargs):
            progress["steps"] = offset + state.global_step
            progress["examples"] = base["examples"] + examples_seen(
                state.global_step, data.get("size", 0), data.get("batches", 0), data.get("batch", batch_size))

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            loader = kwargs.get("eval_dataloader")
            if loader is not None:
                progress["eval_examples"] = progress.get("eval_examples", 0) + len(loader.dataset)
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
