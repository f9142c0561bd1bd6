"""Train a design on a task with the Hugging Face `Trainer`, and write what a run produced.

`train(model, task, design, data_dir, output_dir, **options)`:

1. the task spec and its train/validation examples (`lamina.tasks`); the task's kind
   (`lamina.tasks.kind`) supplies everything task-specific from here on: features, collator, model
   class and head, how the Trainer evaluates (scoring gathered logits, or generating), metrics;
2. the model (the kind's auto class, labels from the task spec) and `lamina.apply(model, design)`:
   exactly the design's tensors train;
3. `LaminaTrainer`: evaluation every epoch (or every `eval_steps`), best checkpoint by the task's main
   metric (`load_best_model_at_end`). Its checkpoints hold only what trains (`lamina.save`: design.json +
   adapter.safetensors, plus `reparam.safetensors` for prefix MLPs, which a save collapses) and the
   optimizer / scheduler / RNG / trainer state: never the frozen base weights;
4. `output_dir`: the best adapter (`lamina.save`), `results.json`, `train.log`; the checkpoints live in
   `output_dir/checkpoints` until the run has finished (`keep_checkpoints=True` keeps them).

`resume=True` continues from the last complete checkpoint in `output_dir/checkpoints` (a run killed
with SIGKILL included) and reaches the same final metrics as an uninterrupted run. On CPU a fixed seed
gives the same numbers: seed, data_seed and torch deterministic algorithms (restored afterwards).
Works under `accelerate launch` (DDP, gloo on CPU): only the main process writes files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import pickle
import platform
import resource
import shutil
import sys
import time
from pathlib import Path

import torch

from lamina import reporting
from lamina.checks import at_most, default_max_length
from lamina.design import Design
from lamina.errors import LaminaError
from lamina.evaluate import (
    by_length, check_design, check_model, check_not_empty, load_model, resolve_task, task_for_model,
)
from lamina.tasks.base import DataFiles
from lamina.tasks.kind import EvalSet, TaskOptions
from lamina.tasks.regression import init_regression_bias  # noqa: F401  (public here since it was born here)
from lamina.outputs import resolve_model

log = logging.getLogger("lamina.train")

CHECKPOINTS = "checkpoints"
RESULTS, LOG_FILE = "results.json", "train.log"
REPARAM_FILE = "reparam.safetensors"  # training-only tensors a save collapses (prefix MLPs)
_CKPT_NEEDS = ("design.json", "adapter.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json")

PEFT_LR, FULL_LR = 1e-3, 2e-5


# --------------------------------------------------------------------------- checkpoints


def _adapter_name(model) -> str | None:
    """The active adapter's name; None for full fine-tuning."""
    from lamina.inject import active_adapter

    return active_adapter(model)


def save_checkpoint_model(model, folder: str | Path) -> None:
    """What a checkpoint keeps of the model: the trained tensors only (`lamina.save`). A save stores a
    prefix MLP collapsed to the keys/values it produces; to continue training, the MLP's own tensors go
    to reparam.safetensors beside it."""
    import safetensors
    import safetensors.torch

    from lamina import io as lamina_io
    from lamina.inject import adapters_of

    lamina_io.save(model, folder)
    name = _adapter_name(model)
    if name is None:
        return
    live = adapters_of(model)[name].state_dict()
    with safetensors.safe_open(str(Path(folder) / lamina_io.TENSOR_FILE), "pt") as handle:
        stored = set(handle.keys())
    extra = {k: v.detach().contiguous() for k, v in live.items() if k not in stored}
    if extra:
        safetensors.torch.save_file(extra, str(Path(folder) / REPARAM_FILE))


def restore_checkpoint_model(model, folder: str | Path) -> None:
    """Copy a checkpoint's tensors into the live model in place (parameters keep their identity, so an
    optimizer built on them stays valid). The file is read and checksum-verified by lamina.io; every
    live tensor must be found in it (or, for a prefix MLP, in reparam.safetensors)."""
    from lamina import io as lamina_io

    if _adapter_name(model) is None:  # full fine-tuning: lamina.load restores the whole state dict in place
        lamina_io.load(model, folder)
        return
    live, stored = _checkpoint_tensors(model, folder)
    with torch.no_grad():
        for key, tensor in live.items():
            tensor.copy_(stored[key])


def check_resume(model, folder: Path) -> None:
    """Before a resumed run writes anything (its log included): the checkpoint's tensors fit this design,
    and the Trainer's own files load with torch's weights-only loader (a pickle it refuses is a user error
    naming the checkpoint; nothing is unpickled)."""
    from transformers.trainer_pt_utils import safe_globals

    from lamina.adapter_checks import check_finite

    if _adapter_name(model) is not None:
        check_finite(_checkpoint_tensors(model, folder)[1], folder)  # a NaN adapter would train on silently
    for state in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
        path = Path(folder) / state
        if not path.is_file():
            continue
        try:
            with safe_globals():  # what the Trainer itself allows in rng_state.pth (numpy's RNG state)
                torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise _pickle_refusal(f"{folder}: {state}", err) from None


def _pickle_refusal(what: str, err: Exception) -> LaminaError:
    return LaminaError(f"{what} holds pickled objects torch will not load safely ({str(err).splitlines()[0][:60]}...); "
                       "delete the checkpoint folder to resume from the one before, or train without --resume")


def _checkpoint_tensors(model, folder) -> tuple[dict, dict]:
    """(live adapter tensors, stored tensors), checked: every live tensor stored, with its shape."""
    import safetensors.torch

    from lamina import io as lamina_io
    from lamina.inject import adapters_of

    name = _adapter_name(model)
    info = lamina_io.read_info(folder)
    stored = lamina_io.read_tensors(folder, info)
    extra_path = Path(folder) / REPARAM_FILE
    if extra_path.is_file():
        stored.update(safetensors.torch.load_file(str(extra_path)))
    adapters = adapters_of(model)[name]
    live = adapters.state_dict()
    missing = [k for k in live if k not in stored]
    if missing:
        raise LaminaError(f"{folder}: checkpoint has no tensor '{missing[0]}' (it does not match this design)")
    for key, tensor in live.items():
        if tuple(stored[key].shape) != tuple(tensor.shape):
            raise LaminaError(f"{folder}: tensor '{key}' has shape {list(stored[key].shape)}, "
                              f"the model needs {list(tensor.shape)}")
    if Design.from_dict(info["design"]).to_dict() != adapters.design.to_dict():  # tensors fit, the records differ
        raise LaminaError(f"{folder}: the design in its design.json differs from this run's; resume with the "
                          "design the run started with, or delete the checkpoint folder, or train without --resume")
    return live, stored


def complete_checkpoints(folder: Path) -> list[Path]:
    """checkpoint-N folders that were written to the end (trainer_state.json is written last, and must
    parse: one cut short by a full disk or a crash does not count), by step."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        if path.is_dir() and path.name.startswith("checkpoint-") and path.name[11:].isdigit():
            if all((path / f).is_file() for f in _CKPT_NEEDS) and _readable_state(path / "trainer_state.json"):
                found.append(path)
    return sorted(found, key=lambda p: int(p.name[11:]))


def _readable_state(path: Path) -> bool:
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        log.warning("%s is unreadable (cut short?): that checkpoint is skipped", path)
        return False
    return isinstance(state, dict) and isinstance(state.get("global_step"), int)


def _clean_checkpoints(folder: Path, fresh: bool) -> None:
    """Remove incomplete checkpoints (and half-written temp folders) left by a killed run; for a
    fresh run, remove the earlier run's checkpoints too."""
    if not folder.is_dir():
        return
    complete = set(complete_checkpoints(folder))
    for path in folder.iterdir():
        if path.name.startswith(".") and path.name.endswith(".partial"):
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_dir() and path.name.startswith("checkpoint-") and (fresh or path not in complete):
            shutil.rmtree(path, ignore_errors=True)


def _trainer_class():
    """LaminaTrainer, built lazily so importing lamina.train does not import transformers' Trainer."""
    from transformers import Trainer
    from transformers.trainer_utils import EvalLoopOutput

    class LaminaTrainer(Trainer):
        """A Trainer whose checkpoints hold only the trained tensors, and whose evaluation is the task
        kind's (`TaskKind.trainer_evaluation`: score the logits the loop gathered, or generate)."""

        def __init__(self, *args, task_eval: EvalSet | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self.task_eval = task_eval  # the eval split, encoded; aligned with eval_dataset

        def _save(self, output_dir=None, state_dict=None):
            if self.args.should_save:
                save_checkpoint_model(self.accelerator.unwrap_model(self.model), output_dir or self.args.output_dir)

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            restore_checkpoint_model(self.accelerator.unwrap_model(model or self.model), resume_from_checkpoint)

        def _load_best_model(self):
            log.info("loading the best checkpoint %s (%s %.4f)", self.state.best_model_checkpoint,
                     self.args.metric_for_best_model, self.state.best_metric)
            restore_checkpoint_model(self.accelerator.unwrap_model(self.model), self.state.best_model_checkpoint)

        def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                            metric_key_prefix="eval"):
            def loop(loss_only: bool):
                return super(LaminaTrainer, self).evaluation_loop(dataloader, description, loss_only, ignore_keys,
                                                                  metric_key_prefix)

            if self.task_eval is None:
                return loop(prediction_loss_only)
            return self.task_eval.spec.type.trainer_evaluation(self, loop, self.task_eval, metric_key_prefix)

    return LaminaTrainer


# --------------------------------------------------------------------------- run bookkeeping


def _callbacks(log_path: Path | None, is_main: bool, extra):
    from transformers import TrainerCallback

    class RunLog(TrainerCallback):
        """Every log entry (loss, lr, eval metrics) as one JSON line in train.log."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if log_path is not None and is_main and logs:
                with open(log_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"step": state.global_step, "epoch": state.epoch, **logs}) + "\n")

    return [RunLog(), *(extra or ())]


@contextlib.contextmanager
def _determinism(seed: int, enabled: bool):
    """Seed everything; with `enabled`, torch deterministic algorithms for this run only (restored after)."""
    from transformers import enable_full_determinism, set_seed

    before = torch.are_deterministic_algorithms_enabled()
    (enable_full_determinism if enabled else set_seed)(seed)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


@contextlib.contextmanager
def _quiet_loading():
    """transformers' own bar (weight loading) stays off: the checks of the loaded weights and of the encoded
    data come after it, and a refusal must stay one line (`--no-progress` governs the training bars)."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        (hf_logging.enable_progress_bar if before else hf_logging.disable_progress_bar)()


@contextlib.contextmanager
def _file_log(path: Path | None):
    """Mirror lamina's log lines (and transformers' warnings) into train.log."""
    if path is None:
        yield
        return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    targets = [logging.getLogger("lamina"), logging.getLogger("transformers")]
    old_level = targets[0].level
    targets[0].setLevel(logging.INFO)
    for logger in targets:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in targets:
            logger.removeHandler(handler)
        targets[0].setLevel(old_level)
        handler.close()


def _versions() -> dict:
    import accelerate
    import transformers

    import lamina

    return {"lamina": lamina.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "accelerate": accelerate.__version__, "python": platform.python_version()}


def _eval_history(state) -> list[dict]:
    """One entry per evaluation (each epoch, or each eval_steps): every eval_* metric without its prefix."""
    rows = []
    for entry in state.log_history:
        if any(k.startswith("eval_") for k in entry) and "eval_runtime" in entry:
            row = {"epoch": entry.get("epoch"), "step": entry.get("step")}
            row.update({k[5:]: v for k, v in entry.items() if k.startswith("eval_")})
            rows.append(row)
    return rows


def _check_precision(precision: str) -> None:
    if precision not in ("fp32", "bf16", "fp16"):
        raise LaminaError(f"precision must be fp32, bf16 or fp16, not '{precision}'")
    if precision == "fp16" and not torch.cuda.is_available():
        raise LaminaError("precision fp16 needs a CUDA device (on CPU use bf16)")


def _check_options(**values) -> None:
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise LaminaError(f"{key} must be a finite number, got {value}")
        if key == "seed" and not 0 <= value < 2**32:
            raise LaminaError(f"seed must be in [0, 2**32), got {value}")
        if key in ("lr", "epochs") and not value > 0:
            raise LaminaError(f"{key} must be > 0, got {value}")
        if key in ("batch_size", "max_length", "eval_steps", "max_steps", "grad_accum", "doc_stride", "max_new_tokens",
                   "num_beams") and value < 1:
            raise LaminaError(f"{key} must be >= 1, got {value}")
        at_most(key, value)
        if key in ("train_limit", "eval_limit") and value < 1:
            raise LaminaError(f"{key} must be >= 1, got {value}")
        if key == "warmup_ratio" and not 0 <= value < 1:
            raise LaminaError(f"warmup_ratio must be in [0, 1), got {value}")
        if key == "weight_decay" and value < 0:
            raise LaminaError(f"weight_decay must be >= 0, got {value}")


def _check_trainable(report, config, given: int | None, max_length: int) -> int:
    """Before anything is written: the design trains something (no groups, no prompt and a frozen head would
    fail at the first backward pass), and its prompt tokens plus the input fit the model's positions: the
    default max length leaves room for the prompt; a given one that does not is refused. Returns the max length."""
    if report.trainable == 0:
        raise LaminaError("this design trains nothing (no groups, no prompt, train_head false); add a group or "
                          "set train_head: true")
    from lamina.checks import max_tokens

    prompt, positions = report.design.prompt, max_tokens(config)
    if prompt is None or positions is None or prompt.length + max_length <= positions:
        return max_length
    if given is None:
        return positions - prompt.length
    raise LaminaError(f"prompt.length {prompt.length} + max_length {max_length} = {prompt.length + max_length} "
                      f"tokens, more than this model's {positions} positions; use --max-length "
                      f"{positions - prompt.length} or a shorter prompt")


# --------------------------------------------------------------------------- train


def train(model_name_or_path: str, task: str, design, data_dir=None, output_dir="runs/run", *,
          lr: float | None = None, warmup_ratio: float = 0.06, weight_decay: float = 0.0, epochs: float = 3,
          batch_size: int = 32, eval_batch_size: int | None = None, max_length: int | None = None, doc_stride: int = 128,
          seed: int = 42, train_limit: int | None = None, eval_limit: int | None = None,
          eval_steps: int | None = None, max_steps: int | None = None, grad_accum: int = 1,
          resume: bool = False, keep_checkpoints: bool = False, deterministic: bool = True,
          progress: bool = True, logging_steps: int | None = None, callbacks: list | None = None,
          final_eval: bool = False, label_mean_init: bool = True, gradient_checkpointing: bool = False,
          precision: str = "fp32", max_new_tokens: int | None = None, num_beams: int = 1,
          report_to: list[str] | None = None) -> dict:
    """Fine-tune `design` (preset string, design file, dict or Design) on `task`; returns the results
    dict also written to `output_dir/results.json`. `data_dir`: a data folder, or `{"train": file,
    "validation": file}`. `lr` defaults to 1e-3 for PEFT designs and 2e-5 for `full`. `eval_steps`
    evaluates/checkpoints every N optimizer steps instead of every epoch; `max_steps` caps training.
    `callbacks`: extra `transformers.TrainerCallback`s. `final_eval=True` re-scores the restored best
    checkpoint after training (a check of the restore; by default its in-loop evaluation is reported: the
    same checkpoint on the same data, one validation pass fewer). `label_mean_init` (regression tasks):
    the head's output bias starts at the mean training label (see `init_regression_bias`).
    `gradient_checkpointing` turns on the HF model's own switch (non-reentrant, so frozen inputs still
    pass gradients to the adapters). `precision`: "fp32", "bf16" (autocast, on CPU too) or "fp16" (CUDA);
    the base and adapter tensors stay float32 either way. `max_new_tokens` / `num_beams`: generation
    settings of kinds scored by decoding. `report_to`: the Trainer's logging integrations by name
    (tensorboard writes to `output_dir/tensorboard`; see `lamina.reporting`)."""
    from transformers import TrainingArguments

    import lamina

    _check_options(lr=lr, epochs=epochs, batch_size=batch_size, max_length=max_length, eval_steps=eval_steps,
                   max_steps=max_steps, grad_accum=grad_accum, doc_stride=doc_stride, train_limit=train_limit,
                   eval_limit=eval_limit, warmup_ratio=warmup_ratio, weight_decay=weight_decay,
                   max_new_tokens=max_new_tokens, num_beams=num_beams, seed=seed)
    _check_precision(precision)
    report_to = reporting.check(report_to)
    model_name_or_path = resolve_model(model_name_or_path)  # a local folder is recorded by its absolute path
    spec, data_path = resolve_task(task, data_dir)
    spec = task_for_model(spec, model_name_or_path)  # e.g. GLUE as text-to-text on an encoder-decoder LM
    kind = spec.type
    out = Path(output_dir).expanduser().resolve()
    ckpt_dir = out / CHECKPOINTS
    config = check_model(model_name_or_path, spec, max_length)  # fails fast, before data or weights load
    given_max_length, max_length = max_length, max_length or default_max_length(config)
    from lamina.suggest import is_auto, suggest_for_run

    if not is_auto(design):  # an `auto:` design is known only after its probe (below)
        max_length = _check_trainable(check_design(model_name_or_path, spec, design, config=config), config,
                                      given_max_length, max_length)
    train_examples, eval_examples, note = kind.training_data(spec, data_path, train_limit, eval_limit)
    check_not_empty(train_examples, f"{spec.name} train split")
    check_not_empty(eval_examples, f"{spec.name} validation split")
    kind.check_labelled(spec, train_examples, f"{spec.name} train split")
    kind.check_labelled(spec, eval_examples, f"{spec.name} validation split")
    options = TaskOptions(max_length=max_length, doc_stride=doc_stride, max_new_tokens=max_new_tokens,
                          num_beams=num_beams, batch_size=eval_batch_size or 2 * batch_size,
                          label_mean_init=label_mean_init)

    # --- lamina suggest: an `auto:...` design is replaced here by the design a probe on this run's training
    # data suggests (<output_dir>/suggest/, cost in results.json "suggest"); any other design passes through.
    with _quiet_loading():  # the probe loads the model too
        design, suggested = suggest_for_run(design, model_name_or_path, spec, train_examples, out, batch_size=batch_size,
                                            max_length=max_length, doc_stride=doc_stride, epochs=epochs,
                                            max_steps=max_steps, grad_accum=grad_accum, seed=seed, resume=resume)
    if suggested is not None:
        options.max_length = max_length = _check_trainable(
            check_design(model_name_or_path, spec, design, config=config), config, given_max_length, max_length)
    with _determinism(seed, deterministic), _quiet_loading():
        model, tokenizer = load_model(model_name_or_path, spec)
        options.model_config = model.config
        kind.prepare_model(model, tokenizer, spec, train_examples, options)  # before apply: adapters copy heads
        report = lamina.apply(model, design)
        design_obj = report.design
        if lr is None:
            lr = FULL_LR if design_obj.full else PEFT_LR
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if trainable != report.trainable:  # the builder's report is the contract
            raise LaminaError(f"internal: {trainable:,} trainable parameters but the design reports {report.trainable:,}")
        # features before any folder is touched: bad data (too long for the model) fails with nothing written
        train_features = kind.features(spec, train_examples, tokenizer, options, train=True)
        eval_features = kind.features(spec, eval_examples, tokenizer, options, train=False)
        eval_features = [eval_features[i] for i in by_length(eval_features)]  # less padding; metrics ignore order
        task_eval = EvalSet(spec, eval_examples, eval_features, tokenizer, options)
        by_steps = eval_steps is not None
        integrations, reporters = reporting.callbacks(report_to, out, int(os.environ.get("RANK", "0")) == 0)
        args = TrainingArguments(
            output_dir=str(ckpt_dir), use_cpu=not torch.cuda.is_available(), seed=seed, data_seed=seed,
            full_determinism=False,  # applied above (and undone after this run), not left on for the process
            learning_rate=lr, warmup_steps=warmup_ratio, weight_decay=weight_decay, num_train_epochs=epochs,
            max_steps=max_steps or -1, per_device_train_batch_size=batch_size,
            per_device_eval_batch_size=eval_batch_size or 2 * batch_size, gradient_accumulation_steps=grad_accum,
            eval_strategy="steps" if by_steps else "epoch", save_strategy="steps" if by_steps else "epoch",
            eval_steps=eval_steps, save_steps=eval_steps, save_total_limit=2, save_only_model=False,
            load_best_model_at_end=True, metric_for_best_model=spec.main_metric, greater_is_better=True,
            logging_strategy="steps", logging_steps=logging_steps or 10, report_to=integrations,
            disable_tqdm=not progress, dataloader_num_workers=0, ddp_backend=_ddp_backend(),
            remove_unused_columns=False,
            # Task heads compute a plain mean loss; the Trainer's token averaging across processes would
            # multiply it (and its gradient) by the number of processes under DDP.
            average_tokens_across_devices=False,
            **_checkpointing_args(TrainingArguments, gradient_checkpointing),
            bf16=precision == "bf16", fp16=precision == "fp16",
        )
        is_main = args.process_index == 0
        with args.main_process_first(desc="checkpoint folder"):
            if is_main:
                out.mkdir(parents=True, exist_ok=True)
                _clean_checkpoints(ckpt_dir, fresh=not resume)
                if not resume:
                    for stale in (RESULTS, LOG_FILE):
                        (out / stale).unlink(missing_ok=True)
        resume_from = complete_checkpoints(ckpt_dir)[-1] if resume and complete_checkpoints(ckpt_dir) else None
        if resume_from:
            check_resume(model, resume_from)
        log_path = out / LOG_FILE if is_main else None
        with _file_log(log_path):
            log.info("task %s (%s): %d train / %d validation examples from %s%s", spec.name, spec.kind,
                     len(train_examples), len(eval_examples), data_path, f"; {note}" if note else "")
            log.info("model %s, design %s: %s trainable of %s (%.4f%%)", model_name_or_path, design_obj.name or "custom",
                     f"{report.trainable:,}", f"{report.base_params:,}", report.percent(True))
            if resume:
                log.info("resuming from %s", resume_from or "nothing: no complete checkpoint, starting fresh")
            trainer = _trainer_class()(
                model=model, args=args, train_dataset=kind.model_inputs(train_features),
                eval_dataset=kind.model_inputs(eval_features), data_collator=kind.collator(tokenizer, model),
                task_eval=task_eval, callbacks=_callbacks(log_path, is_main, [*reporters, *(callbacks or ())]),
            )
            if not progress:  # no bars and no printed log dicts (they still go to train.log)
                from transformers.trainer_callback import PrinterCallback

                trainer.remove_callback(PrinterCallback)
            started = time.time()
            try:
                output = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
            except pickle.UnpicklingError as err:  # torch's weights_only loader refused a checkpoint file
                if not resume_from:
                    raise
                raise _pickle_refusal(f"{resume_from}: a file of this checkpoint", err) from None
            train_time = time.time() - started
            history = _eval_history(trainer.state)
            # the restored best checkpoint, scored again; final_eval=False reuses its in-loop evaluation
            # (same checkpoint, same data) and saves one pass over the validation set (bench/bench_quality.py)
            final = trainer.evaluate() if final_eval or not _eval_history(trainer.state) else {}
            data_option = data_path.to_json() if isinstance(data_path, DataFiles) else str(data_path)
            results = _results(spec, trainer, history, final, output, report, design_obj, model_name_or_path, data_path, note,
                               train_time, seed, resume_from, dict(
                                   lr=lr, warmup_ratio=warmup_ratio, weight_decay=weight_decay, epochs=epochs,
                                   batch_size=batch_size, eval_batch_size=args.per_device_eval_batch_size,
                                   max_length=max_length, doc_stride=doc_stride, seed=seed, train_limit=train_limit,
                                   eval_limit=eval_limit, eval_steps=eval_steps, max_steps=max_steps,
                                   grad_accum=grad_accum, deterministic=deterministic, task=task, final_eval=final_eval,
                                   label_mean_init=label_mean_init, gradient_checkpointing=gradient_checkpointing,
                                   precision=precision, max_new_tokens=options.max_new_tokens, num_beams=num_beams,
                                   report_to=report_to, data_dir=data_option, world_size=args.world_size),
                               len(train_examples), len(eval_examples), out)
            if suggested is not None:  # lamina suggest: the probe's cost and what it chose (see above)
                results["suggest"] = suggested
            if "tensorboard" in report_to:
                results["tensorboard_dir"] = str(out / reporting.TENSORBOARD_DIR)
            if is_main:
                lamina_save(model, out)
                _write_json(out / RESULTS, results)
                if not keep_checkpoints:
                    shutil.rmtree(ckpt_dir, ignore_errors=True)
                log.info("best %s %.4f; adapter, results.json and train.log in %s", spec.main_metric,
                         results["best"][spec.main_metric], out)
        if args.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()
    return results


def _checkpointing_args(arguments_class, on: bool) -> dict:
    """The checkpointing switch under the name this transformers uses: newer releases renamed
    `gradient_checkpointing*` to `activation_checkpointing*` and warn on the old name (the demo printed it)."""
    name = "activation_checkpointing" if "activation_checkpointing" in arguments_class.__dataclass_fields__ else \
        "gradient_checkpointing"
    return {name: on, f"{name}_kwargs": {"use_reentrant": False} if on else None}


def _ddp_backend() -> str | None:
    """gloo for multi-process CPU runs (accelerate launch --cpu); otherwise let accelerate choose."""
    multi = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return "gloo" if multi and not torch.cuda.is_available() else None


def lamina_save(model, folder: Path) -> None:
    from lamina import io as lamina_io

    lamina_io.save(model, folder)


def _write_json(path: Path, data: dict) -> None:
    from lamina.util import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def _results(spec, trainer, history, final, output, report, design, model_name, data_path, note, train_time, seed,
             resumed_from, options, n_train, n_eval, out) -> dict:
    best_step = trainer.state.best_global_step
    best_row = next((r for r in history if r["step"] == best_step), None)
    final_metrics = {k[5:]: v for k, v in final.items() if k.startswith("eval_")}
    best = {k: v for k, v in (best_row or final_metrics).items() if k not in ("epoch", "step")}
    return {
        "task": spec.name, "kind": spec.kind, "main_metric": spec.main_metric,
        "main_score": best.get(spec.main_metric),
        "best": best, "best_step": best_step, "best_epoch": best_row["epoch"] if best_row else None,
        "final_eval": final_metrics, "evaluations": history,
        "train_loss": output.training_loss, "global_step": trainer.state.global_step,
        "trainable_params": report.trainable, "stored_params": report.stored,
        "trainable_percent": report.percent(True), "trainable_percent_without_head": report.percent(False),
        "base_params": report.base_params, "params_report": report.to_dict(),
        "train_time_s": round(train_time, 2),
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "seed": seed, "versions": _versions(), "design": design.to_dict(), "model": str(model_name),
        "data": str(data_path), "data_note": note, "train_examples": n_train, "eval_examples": n_eval,
        "resumed_from": str(resumed_from) if resumed_from else None, "options": options,
        "adapter_dir": str(out), "command": " ".join(sys.argv) if sys.argv and sys.argv[0] else None,
        "host": {"cpu_threads": torch.get_num_threads(), "platform": platform.platform(), "pid": os.getpid()},
    }
