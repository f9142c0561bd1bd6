"""The task-kind contract: everything training, evaluation, prediction, the CLI and the search need to
know about one kind of task (classification, regression, extractive QA, text-to-text, instruction tuning).

A kind is one object (a `TaskKind` subclass) in one file of `lamina.tasks`, registered with one line in
`lamina.tasks.kinds` (or, from outside lamina, with `lamina.tasks.register_kind`). `lamina.train`,
`lamina.evaluate`, the CLI and the search only ever call these methods; none of them tests which kind
a task is. A task (`TaskSpec`) names its kind in `spec.kind`; `spec.type` is the kind object.

The pieces, in the order a run uses them:

- **spec**: `check_spec` (what a spec of this kind must hold), `num_labels`, `spec_from_data` (the task
  a folder of your own files defines, for the names in `data_tasks`), `placeholder_spec` (a spec for
  counting parameters without data), `adopt` (take over another kind's task for a model, e.g. GLUE as
  text-to-text on T5);
- **data**: `load_split`, `training_data` (train + validation examples), `check_labelled`;
- **model**: `model_class` (the transformers auto class and config arguments), `check_model` (does a
  loaded adapter's model fit this task), `claims` (which kind a bare model is for), `prepare_model`
  (before the design is applied, e.g. a regression head's bias);
- **features**: `encode`, `collator`, `model_inputs` (features without bookkeeping keys);
- **evaluation**: `evaluate` (a plain no-grad pass, used by `lamina eval`) and `trainer_evaluation`
  (what the Trainer's evaluation loop does: score logits it gathered, or generate);
- **prediction**: `read_inputs` and `predict` (what `lamina predict` writes per input line).

`LogitsKind` implements evaluation for kinds scored from the model's logits; `lamina.tasks.generation`
holds the shared generation loop for kinds scored by decoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .base import DataFiles, TaskError, TaskSpec


@dataclass
class TaskOptions:
    """Run options the kinds read (each kind uses the ones it needs)."""

    max_length: int = 128  # tokens per example (QA: per window; generation: per sequence)
    doc_stride: int = 128  # QA: tokens shared by neighbouring windows
    max_new_tokens: int | None = None  # generation: None = the kind's default (from the training targets)
    num_beams: int = 1  # generation: 1 = greedy
    batch_size: int = 64  # evaluation / prediction batch size
    label_mean_init: bool = True  # regression: head bias starts at the mean training label
    model_config: Any = None  # the loaded model's config (set once the model is loaded)
    extra: dict = field(default_factory=dict)  # room for options of kinds defined outside lamina


@dataclass
class EvalSet:
    """One evaluation split, encoded: what a kind scores."""

    spec: TaskSpec
    examples: list[dict]
    features: list[dict]
    tokenizer: Any
    options: TaskOptions


class TaskKind:
    """Base class of a task kind; the defaults suit single-text tasks read by `lamina.tasks.load_examples`."""

    name: str = ""
    data_tasks: tuple[str, ...] = ()  # task names meaning "your own files of this kind" (e.g. "text")
    input_help: str = ""  # what a `lamina predict` input line holds, for messages

    # ------------------------------------------------------------------ spec
    def check_spec(self, spec: TaskSpec) -> None:
        """Raise TaskError when `spec` is not a valid task of this kind."""

    def num_labels(self, spec: TaskSpec) -> int:
        return 1

    def spec_from_data(self, data: Path | DataFiles) -> TaskSpec:
        """The task your own files define (for the names in `data_tasks`)."""
        raise TaskError(f"{self.name} tasks are not defined by a data folder")

    def placeholder_spec(self, num_labels: int = 2) -> TaskSpec:
        """A spec of this kind without data: for counting parameters and loading saved adapters."""
        raise TaskError(f"{self.name}: no placeholder task")

    def adopt(self, spec: TaskSpec, config) -> TaskSpec | None:
        """A spec of this kind that stands for `spec` (another kind's task) on a model with `config`, or
        None. Lets a kind take over tasks on models it suits better (text-to-text on T5)."""
        return None

    # ------------------------------------------------------------------ data
    def load_split(self, spec: TaskSpec, data, split: str, limit: int | None = None) -> tuple[list[dict], str | None]:
        """Examples of one split and a note when they had to be derived."""
        from .registry import load_examples

        if isinstance(data, DataFiles):
            file = data.get(split)
            if file is None:
                raise TaskError(f"{spec.name}: no {split} file given (give --train-file and --dev-file, or --data-dir)")
            data = file
        elif data.is_file() and spec.family == "glue":
            raise TaskError.at(data, f"{spec.name}: give the GLUE folder (or the task folder), not a file")
        return load_examples(spec, data, split, limit=limit), None

    def training_data(self, spec: TaskSpec, data, train_limit=None, eval_limit=None):
        """(train examples, validation examples, note). One file cannot be both splits."""
        if not isinstance(data, DataFiles) and data.is_file():
            raise TaskError.at(data, "training needs a folder holding the train and dev files (or --train-file and "
                                     "--dev-file), not one file")
        train, note = self.load_split(spec, data, "train", train_limit)
        dev, _ = self.load_split(spec, data, "validation", eval_limit)
        return train, dev, note

    def check_labelled(self, spec: TaskSpec, examples: list[dict], what: str) -> None:
        """Raise when examples lack what scoring or training needs."""
        if any(ex.get("label") is None for ex in examples):
            raise TaskError(f"{what}: the examples have no labels to train or score with "
                            "(use `lamina predict` for unlabelled data)")

    # ------------------------------------------------------------------ model
    def model_class(self, spec: TaskSpec, config) -> tuple[type, dict]:
        """(transformers auto class, keyword arguments for its config)."""
        raise NotImplementedError

    def check_model(self, spec: TaskSpec, model) -> None:
        """Raise LaminaError when a loaded model cannot serve `spec` (wrong head)."""

    def claims(self, model) -> bool:
        """Whether a model with no task recorded was made for this kind (picks the kind for predict)."""
        return False

    def prepare_model(self, model, tokenizer, spec: TaskSpec, train_examples: list[dict], options: TaskOptions) -> None:
        """Adjust a freshly loaded model before the design is applied (nothing by default)."""

    # ------------------------------------------------------------------ features
    def encode(self, spec: TaskSpec, examples: list[dict], tokenizer, options: TaskOptions, train: bool) -> list[dict]:
        raise NotImplementedError

    def features(self, spec: TaskSpec, examples: list[dict], tokenizer, options: TaskOptions, train: bool) -> list[dict]:
        """`encode`, then checked (`check_features`): what training, evaluation and the search call."""
        from lamina.errors import LaminaError

        check_room(spec, tokenizer, options.max_length)
        try:
            features = self.encode(spec, examples, tokenizer, options, train)
        except Exception as err:  # the Rust tokenizers library fails on a broken tokenizer with a bare Exception
            if type(err) is not Exception:
                raise
            raise LaminaError(f"{spec.name}: the tokenizer fails on this text ({str(err).strip()[:160]})") from None
        check_features(features, tokenizer, options.model_config, f"{spec.name} {'training' if train else 'evaluation'} data")
        return features

    def collator(self, tokenizer, model) -> Callable:
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def model_inputs(self, features: list[dict]) -> list[dict]:
        """Features as the collator and model take them (without bookkeeping keys)."""
        return features

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, model, data: EvalSet) -> dict[str, float]:
        """Metrics of `model` on an encoded split (no grad, eval mode)."""
        raise NotImplementedError

    def trainer_evaluation(self, trainer, loop: Callable, data: EvalSet, prefix: str):
        """The Trainer's evaluation loop for this kind: returns an `EvalLoopOutput` whose metrics carry
        `prefix_` names. `loop(prediction_loss_only)` runs the Trainer's own loop over the eval dataset."""
        from transformers.trainer_utils import EvalLoopOutput

        model = trainer.accelerator.unwrap_model(trainer.model)
        metrics = {f"{prefix}_{k}": v for k, v in self.evaluate(model, data).items()}
        return EvalLoopOutput(None, None, metrics, len(data.examples))

    # ------------------------------------------------------------------ prediction
    def read_inputs(self, spec: TaskSpec, path: Path) -> list[dict]:
        """Unlabelled examples from a `lamina predict` input file."""
        raise TaskError(f"{self.name}: no predict input format")

    def predict(self, model, tokenizer, spec: TaskSpec, examples: list[dict], options: TaskOptions) -> list[dict]:
        """One JSON-able row per example (with its "id")."""
        raise TaskError(f"{self.name}: prediction is not available")


# ---------------------------------------------------------------------- kinds scored from logits


def check_room(spec: TaskSpec, tokenizer, max_length: int | None) -> None:
    """A max length must leave room for text beside the special tokens the tokenizer adds."""
    from lamina.errors import LaminaError

    if max_length is None:
        return
    try:
        fixed = tokenizer.num_special_tokens_to_add(pair=len(spec.text_fields) > 1)
    except (AttributeError, NotImplementedError, TypeError):
        return
    if max_length <= fixed:
        raise LaminaError(f"--max-length {max_length} leaves no room for text: this tokenizer adds {fixed} special "
                          f"token(s) to each {spec.name} example (give more than {fixed})")


UNKNOWN_SHARE = 0.9  # more of the text than this as the unknown token: the tokenizer does not cover it


def check_features(features: list[dict], tokenizer, config, what: str) -> None:
    """The tokenizer fits the text and the model, before anything trains or is written: every example has
    tokens (none would crash the model), some text survives truncation (a max length too short for the
    special tokens leaves none), no token id is beyond the model's embedding rows (another model's
    tokenizer), and the text is not nearly all the unknown token (a tokenizer without its vocabulary)."""
    from lamina.errors import LaminaError

    ids = [f.get("input_ids") for f in features if isinstance(f.get("input_ids"), list)]
    if not ids:
        return
    empty = next((i for i, row in enumerate(ids) if not row), None)
    if empty is not None:
        raise LaminaError(f"{what}: the tokenizer turns example {empty + 1} into no tokens at all (it does not "
                          "fit this text, or it is broken)")
    unk = tokenizer.unk_token_id  # GPT-2's is its end-of-text token, which marks no unknown text
    unk = None if unk in (tokenizer.eos_token_id, tokenizer.bos_token_id) else unk
    special = set(tokenizer.all_special_ids) - {unk}
    content = [t for row in ids for t in row if t not in special]  # text tokens, unknown ones included
    if not content:
        raise LaminaError(f"{what}: no example keeps any text after tokenization and truncation (only special "
                          "tokens remain; is --max-length too short?)")
    rows = getattr(config, "vocab_size", None)
    top = max(max(row) for row in ids)
    if isinstance(rows, int) and top >= rows:
        raise LaminaError(f"{what}: the tokenizer gives token id {top}, beyond the model's {rows} embedding rows "
                          "(vocab_size); this tokenizer does not belong to this model")
    unknown = sum(1 for t in content if t == unk) if unk is not None else 0
    if unknown > UNKNOWN_SHARE * len(content):
        raise LaminaError(f"{what}: {unknown / len(content):.0%} of the text's tokens are the unknown token "
                          f"{tokenizer.unk_token!r}; the tokenizer's vocabulary does not cover this text")


def by_length(features: list[dict]) -> list[int]:
    """Indices of `features` from shortest to longest (stable): batches of similar lengths waste
    little compute on padding."""
    return sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))


def model_device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def run_model(model, tokenizer, features: list[dict], batch_size: int = 64, collate=None):
    """Forward every feature (eval mode, no grad) in batches of similar length; logits as numpy in the
    order of `features`; models with span heads give (start, end) right-padded to the longest window."""
    from transformers import DataCollatorWithPadding

    collate = collate or DataCollatorWithPadding(tokenizer)
    model.eval()
    device = model_device(model)
    order = by_length(features)
    drop = ("labels", "start_positions", "end_positions")
    outs: list[list[np.ndarray]] = []
    for i in range(0, len(order), batch_size):
        batch = collate([{k: v for k, v in features[j].items() if k not in drop} for j in order[i:i + batch_size]])
        out = model(**{k: v.to(device) for k, v in batch.items()})
        parts = [out.start_logits, out.end_logits] if hasattr(out, "start_logits") else [out.logits]
        outs.append([p.float().cpu().numpy() for p in parts])
    if not outs:
        return np.zeros((0,))
    restore = np.argsort(np.asarray(order))  # sorted position of each original feature
    merged = []
    for j in range(len(outs[0])):
        rows = [o[j] for o in outs]
        if rows[0].ndim == 2 and len(outs[0]) == 2:  # span logits: pad to the longest batch
            width = max(r.shape[1] for r in rows)
            rows = [np.pad(r, ((0, 0), (0, width - r.shape[1])), constant_values=-1e4) for r in rows]
        merged.append(np.concatenate(rows)[restore])
    return tuple(merged) if len(merged) == 2 else merged[0]


class LogitsKind(TaskKind):
    """A kind scored from the logits of one forward pass (the Trainer's own evaluation loop gathers them)."""

    def score(self, data: EvalSet, predictions, label_ids) -> dict[str, float]:
        """Metrics from the logits of `data.features` (in that order) and their labels (None if unused)."""
        raise NotImplementedError

    def labels_of(self, features: list[dict]):
        return [f["labels"] for f in features] if features and "labels" in features[0] else None

    def evaluate(self, model, data: EvalSet) -> dict[str, float]:
        inputs = self.model_inputs(data.features)
        outputs = run_model(model, data.tokenizer, inputs, data.options.batch_size)
        return self.score(data, outputs, self.labels_of(data.features))

    def trainer_evaluation(self, trainer, loop, data: EvalSet, prefix: str):
        from transformers.trainer_utils import EvalLoopOutput

        out = loop(False)
        predictions = out.predictions
        if isinstance(predictions, tuple) and len(predictions) != 2:  # some models also return hidden states
            predictions = predictions[0]
        metrics = dict(out.metrics)
        for key, value in self.score(data, predictions, out.label_ids).items():
            metrics[f"{prefix}_{key}"] = value
        return EvalLoopOutput(out.predictions, out.label_ids, metrics, out.num_samples)
