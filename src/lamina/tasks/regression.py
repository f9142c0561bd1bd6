"""Regression (STS-B): one output, mean-squared error, Pearson / Spearman correlation.

The head's output bias starts at the mean training label (`init_regression_bias`). As text-to-text
(T5), the target is the score rounded to the nearest 0.2 and written with one decimal ("3.8"), the
usual STS-B recipe; a generation that is not a number scores as -1.
"""

from __future__ import annotations

import logging

import torch

from lamina.errors import LaminaError

from .base import TaskError, TaskSpec
from .classification import ClassificationKind, model_name
from .kind import EvalSet, TaskOptions

log = logging.getLogger("lamina.train")

UNPARSED = -1.0  # score of a generation that is not a number


def init_regression_bias(model, labels: list[float]) -> float | None:
    """Start a regression head's output bias at the mean training label (returns it; None when the head's
    last layer has no bias, e.g. GPT-2 / Llama `score`). From the usual random init the output sits near 0,
    far from labels like STS-B's 0-5 scores: the first few hundred steps then go to learning that offset,
    and their large, noisy gradients can wreck a short run (measured on MiniLM / 1,000 STS-B rows / 125 steps:
    full fine-tuning 14.9 -> 75.0, UniPELT 3.7 -> 74.1; docs/benchmarks/README.md). Runs before `apply`,
    so each adapter's head copy inherits it."""
    from torch import nn

    from lamina.arch import map_model

    outputs = [m for path in map_model(model).head for m in model.get_submodule(path).modules()
               if isinstance(m, nn.Linear) and m.out_features == 1]
    if not outputs or outputs[-1].bias is None or not labels:
        return None
    mean = float(sum(labels) / len(labels))
    with torch.no_grad():
        outputs[-1].bias.fill_(mean)
    log.info("regression head: output bias set to the mean training label %.4f", mean)
    return mean


class RegressionKind(ClassificationKind):
    name = "regression"
    data_tasks = ()

    def check_spec(self, spec: TaskSpec) -> None:
        if spec.labels:
            raise TaskError(f"task {spec.name!r}: a regression task has no labels")

    def num_labels(self, spec: TaskSpec) -> int:
        return 1

    def spec_from_data(self, data) -> TaskSpec:
        raise TaskError("regression tasks are not defined by a data folder")

    def placeholder_spec(self, num_labels: int = 1) -> TaskSpec:
        return TaskSpec(name=self.name, kind=self.name, text_fields=("text",), metrics=("pearson", "spearman"),
                        main_metric="pearson")

    def model_class(self, spec: TaskSpec, config):
        import transformers as T

        return T.AutoModelForSequenceClassification, {"num_labels": 1, "problem_type": "regression"}

    def check_model(self, spec: TaskSpec, model) -> None:
        if "ForSequenceClassification" not in model_name(model) or model.config.num_labels != 1:
            raise LaminaError(f"task {spec.name!r} is regression (1 output) but this adapter's model is "
                              f"{model_name(model)} with {getattr(model.config, 'num_labels', '?')} output(s)")

    def claims(self, model) -> bool:
        return "ForSequenceClassification" in model_name(model) and model.config.num_labels == 1

    def prepare_model(self, model, tokenizer, spec, train_examples, options: TaskOptions) -> None:
        if options.label_mean_init:  # on resume the checkpoint's head replaces it
            init_regression_bias(model, [ex["label"] for ex in train_examples])

    def score(self, data: EvalSet, predictions, label_ids) -> dict[str, float]:
        from .metrics import compute_metrics

        return compute_metrics(data.spec, predictions, label_ids)

    def predict(self, model, tokenizer, spec, examples, options: TaskOptions) -> list[dict]:
        """The predicted score."""
        logits = self.logits(model, tokenizer, examples, options)
        return [{"id": ex["id"], "score": float(row[0])} for ex, row in zip(examples, logits)]

    # ------------------------------------------------------------------ as text-to-text
    def text_target(self, spec: TaskSpec, example: dict) -> str:
        return f"{round(float(example['label']) * 5) / 5:.1f}"

    def text_value(self, spec: TaskSpec, text: str) -> float:
        try:
            return float(text.strip())
        except ValueError:
            return UNPARSED

    def score_texts(self, spec: TaskSpec, texts: list[str], examples: list[dict]) -> dict[str, float]:
        from .metrics import compute_metrics

        return compute_metrics(spec, [self.text_value(spec, t) for t in texts], [ex["label"] for ex in examples])

    def text_prediction(self, spec: TaskSpec, text: str) -> dict:
        value = self.text_value(spec, text)
        return {"score": value if value != UNPARSED else None}
