"""Classification: a sequence-classification head over the labels of the task (GLUE, the domain
presets, your own .jsonl/.csv files with `text`, optional `text_pair`, and `label`).

On an encoder-decoder LM the same task runs as text-to-text (`lamina.tasks.seq2seq` adopts it): the
source is "<task> <field>: <text> ...", the target the label's name, and a generation scores as the
label it names (anything else counts as wrong).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lamina.errors import LaminaError

from .base import DataFiles, TaskError, TaskSpec
from .kind import EvalSet, LogitsKind, TaskOptions, run_model


def pair_source(spec: TaskSpec, example: dict) -> str:
    """T5-style text-to-text input: "rte sentence1: ... sentence2: ..." (field names from the spec)."""
    parts = [spec.name, f"{spec.text_fields[0]}: {example['text']}"]
    if len(spec.text_fields) == 2 and example.get("text_pair") is not None:
        parts.append(f"{spec.text_fields[1]}: {example['text_pair']}")
    return " ".join(parts)


def model_name(model) -> str:
    return type(model).__name__


class ClassificationKind(LogitsKind):
    name = "classification"
    data_tasks = ("text", "textclassification", "custom")
    input_help = "'text' (and optionally 'text_pair' and 'id')"
    text_form = True  # can run as text-to-text (label names as targets)

    # ------------------------------------------------------------------ spec
    def check_spec(self, spec: TaskSpec) -> None:
        if len(spec.labels) < 2:
            raise TaskError(f"task {spec.name!r}: a classification task needs at least 2 labels")

    def num_labels(self, spec: TaskSpec) -> int:
        return len(spec.labels)

    def spec_from_data(self, data) -> TaskSpec:
        from .textcls import text_task_spec

        if isinstance(data, DataFiles):
            train = data.get("train") or data.get("validation")
            spec = text_task_spec(train)
            splits = {k: str(v) for k, v in data.files}
            return TaskSpec(**{**spec.__dict__, "splits": splits})
        return text_task_spec(data)

    def placeholder_spec(self, num_labels: int = 2) -> TaskSpec:
        return TaskSpec(name=self.name, kind=self.name, text_fields=("text",),
                        labels=tuple(str(i) for i in range(num_labels)))

    # ------------------------------------------------------------------ model
    def model_class(self, spec: TaskSpec, config):
        import transformers as T

        return T.AutoModelForSequenceClassification, {
            "num_labels": spec.num_labels, "id2label": spec.id2label,
            "label2id": {name: i for i, name in spec.id2label.items()},
            "problem_type": "single_label_classification"}

    def check_model(self, spec: TaskSpec, model) -> None:
        if "ForSequenceClassification" not in model_name(model):
            raise LaminaError(f"task {spec.name!r} is {spec.kind} but this adapter's model is {model_name(model)}")
        if model.config.num_labels != spec.num_labels:
            raise LaminaError(f"task {spec.name!r} has {spec.num_labels} output(s), this adapter's head has "
                              f"{model.config.num_labels}")

    def claims(self, model) -> bool:
        return "ForSequenceClassification" in model_name(model) and model.config.num_labels > 1

    # ------------------------------------------------------------------ features and scores
    def encode(self, spec, examples, tokenizer, options: TaskOptions, train: bool) -> list[dict]:
        from .registry import encode_classification

        return encode_classification(examples, tokenizer, spec, max_length=options.max_length)

    def score(self, data: EvalSet, predictions, label_ids) -> dict[str, float]:
        from .metrics import compute_metrics

        return compute_metrics(data.spec, predictions, label_ids)

    # ------------------------------------------------------------------ predict
    def read_inputs(self, spec, path: Path) -> list[dict]:
        from .textcls import load_text_classification

        examples = load_text_classification(Path(path), require_labels=False)
        pairs = [e["text_pair"] is not None for e in examples]
        if any(pairs) and not all(pairs):
            raise TaskError.at(path, "some lines have text_pair and some do not")
        return examples

    def logits(self, model, tokenizer, examples, options: TaskOptions) -> np.ndarray:
        texts = [e["text"] for e in examples]
        pairs = [e["text_pair"] for e in examples]
        enc = tokenizer(texts, pairs if pairs and pairs[0] is not None else None, truncation=True,
                        max_length=options.max_length)
        features = [{k: list(enc[k][i]) for k in enc.keys()} for i in range(len(texts))]
        return np.asarray(run_model(model, tokenizer, features, options.batch_size))

    def predict(self, model, tokenizer, spec, examples, options: TaskOptions) -> list[dict]:
        """The most probable label, its id and its probability."""
        id2label = {int(k): v for k, v in (model.config.id2label or {}).items()}
        rows = []
        for ex, row in zip(examples, self.logits(model, tokenizer, examples, options)):
            probs = np.exp(row - row.max())
            probs /= probs.sum()
            best = int(probs.argmax())
            rows.append({"id": ex["id"], "label": id2label.get(best, str(best)), "label_id": best,
                         "score": float(probs[best])})
        return rows

    # ------------------------------------------------------------------ as text-to-text
    def text_source(self, spec: TaskSpec, example: dict) -> str:
        return pair_source(spec, example)

    def text_target(self, spec: TaskSpec, example: dict) -> str:
        return spec.id2label[int(example["label"])]

    def text_value(self, spec: TaskSpec, text: str):
        """The label id a generation names (-1: none, which scores as wrong)."""
        words = {name.lower(): i for i, name in spec.id2label.items()}
        return words.get(text.strip().lower(), -1)

    def score_texts(self, spec: TaskSpec, texts: list[str], examples: list[dict]) -> dict[str, float]:
        from .metrics import compute_metrics

        return compute_metrics(spec, [self.text_value(spec, t) for t in texts], [ex["label"] for ex in examples])

    def text_prediction(self, spec: TaskSpec, text: str) -> dict:
        value = self.text_value(spec, text)
        return {"label": spec.id2label[value] if value >= 0 else None, "label_id": value if value >= 0 else None}
