"""Extractive question answering (SQuAD v1.1): a span head; contexts cut into overlapping windows,
every window of a question votes, the best span maps back to the context's characters; EM / F1.

A SQuAD folder without train-v1.1.json is split by article (80 % train / 20 % validation, seed 0) so
no context leaks. On an encoder-decoder LM the task runs as text-to-text: "question: ... context: ..."
-> the first gold answer, scored with the same EM / F1.
"""

from __future__ import annotations

from pathlib import Path

from lamina.errors import LaminaError

from .base import DataFiles, TaskError, TaskSpec
from .kind import EvalSet, LogitsKind, TaskOptions, run_model

SQUAD_DEV_SPLIT = dict(dev_fraction=0.2, seed=0)  # used only when a SQuAD folder has no train file


def _squad_files(data) -> tuple[Path | None, Path]:
    """(train file or None, dev file) of a SQuAD folder; a single file counts as the dev file."""
    if isinstance(data, DataFiles):
        dev = data.get("validation")
        if dev is None:
            raise TaskError("squad: no validation file given (give --dev-file, or --data-dir)")
        return data.get("train"), dev
    if data.is_file():
        return None, data
    train, dev = data / "train-v1.1.json", data / "dev-v1.1.json"
    if not dev.is_file():
        raise TaskError.at(dev, "file not found")
    return (train if train.is_file() else None), dev


def _check_window_room(spec, examples: list[dict], tokenizer, max_length: int, stride: int) -> None:
    """Each window holds the question, the special tokens and more context than the overlap between
    windows (the Rust tokenizer aborts the process with a panic otherwise)."""
    questions = [ex.get("question") for ex in examples if isinstance(ex.get("question"), str)]
    if not questions:
        return
    longest = max(len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"])
    room = max_length - longest - tokenizer.num_special_tokens_to_add(pair=True)
    if room <= stride:
        raise TaskError(f"{spec.name}: --max-length {max_length} leaves {max(room, 0)} context tokens per window beside "
                        f"the longest question ({longest} tokens), not more than the windows' overlap of {stride}; "
                        "raise --max-length or lower --doc-stride")

class QAKind(LogitsKind):
    name = "qa"
    input_help = "'question' and 'context' (and optionally 'id')"
    text_form = True

    def check_spec(self, spec: TaskSpec) -> None:
        if spec.labels:
            raise TaskError(f"task {spec.name!r}: only classification tasks have labels")

    def placeholder_spec(self, num_labels: int = 2) -> TaskSpec:
        from .squad import squad_spec

        return squad_spec

    # ------------------------------------------------------------------ data
    def load_split(self, spec, data, split, limit=None):
        from .squad import load_squad, split_by_article

        train_file, dev_file = _squad_files(data)
        key = spec.resolve_split(split)
        if train_file is not None:
            return load_squad(train_file if key == "train" else dev_file, limit=limit), None
        part = split_by_article(load_squad(dev_file), **SQUAD_DEV_SPLIT)[0 if key == "train" else 1]
        note = (f"no train-v1.1.json: {dev_file.name} split by article (dev_fraction "
                f"{SQUAD_DEV_SPLIT['dev_fraction']}, seed {SQUAD_DEV_SPLIT['seed']}); this is the {key} part")
        return (part if limit is None else part[:limit]), note

    def training_data(self, spec, data, train_limit=None, eval_limit=None):
        train, note = self.load_split(spec, data, "train", train_limit)  # one file: split by article
        dev, _ = self.load_split(spec, data, "validation", eval_limit)
        return train, dev, note

    def check_labelled(self, spec, examples, what) -> None:
        if any(not ex["answers"]["text"] for ex in examples):
            raise TaskError(f"{what}: questions without a gold answer cannot be trained or scored")

    # ------------------------------------------------------------------ model
    def model_class(self, spec, config):
        import transformers as T

        return T.AutoModelForQuestionAnswering, {}

    def claims(self, model) -> bool:
        return hasattr(model, "qa_outputs") or "QuestionAnswering" in type(model).__name__

    def check_model(self, spec, model) -> None:
        if not self.claims(model):
            raise LaminaError(f"task {spec.name!r} is {spec.kind} but this adapter's model is {type(model).__name__}")

    # ------------------------------------------------------------------ features and scores
    def encode(self, spec, examples, tokenizer, options: TaskOptions, train: bool) -> list[dict]:
        """Windows; train: with answer positions; eval: with example_id / offsets for decoding."""
        from .squad import prepare_eval_features, prepare_train_features

        stride = min(options.doc_stride, options.max_length // 2)
        _check_window_room(spec, examples, tokenizer, options.max_length, stride)
        prepare = prepare_train_features if train else prepare_eval_features
        return prepare(examples, tokenizer, max_length=options.max_length, stride=stride)

    def model_inputs(self, features: list[dict]) -> list[dict]:
        from .squad import model_inputs

        return model_inputs(features)

    def labels_of(self, features):
        return None

    def score(self, data: EvalSet, predictions, label_ids) -> dict[str, float]:
        from .metrics import squad_metrics
        from .squad import postprocess_predictions

        start, end = predictions[0], predictions[1]
        return squad_metrics(postprocess_predictions(data.examples, data.features, start, end), data.examples)

    # ------------------------------------------------------------------ predict
    def read_inputs(self, spec, path: Path) -> list[dict]:
        from .textcls import _field, _records

        examples = []
        for line, rec in _records(Path(path)):
            examples.append({"id": str(rec.get("id", len(examples))), "title": "",
                             "question": str(_field(rec, "question", path, line)),
                             "context": str(_field(rec, "context", path, line)),
                             "answers": {"text": [], "answer_start": []}})
        if not examples:
            raise TaskError.at(path, "no data rows (empty dataset)")
        return examples

    def predict(self, model, tokenizer, spec, examples, options: TaskOptions) -> list[dict]:
        """The best answer span of each question's context."""
        from .squad import postprocess_predictions

        features = self.encode(spec, examples, tokenizer, options, train=False)
        start, end = run_model(model, tokenizer, self.model_inputs(features), options.batch_size)
        answers = postprocess_predictions(examples, features, start, end)
        return [{"id": ex["id"], "answer": answers[ex["id"]]} for ex in examples]

    # ------------------------------------------------------------------ as text-to-text
    def text_source(self, spec, example: dict) -> str:
        return f"question: {example['question'].strip()} context: {example['context']}"

    def text_target(self, spec, example: dict) -> str:
        return example["answers"]["text"][0]

    def score_texts(self, spec, texts: list[str], examples: list[dict]) -> dict[str, float]:
        from .metrics import squad_metrics

        return squad_metrics({ex["id"]: t for ex, t in zip(examples, texts)}, examples)

    def text_prediction(self, spec, text: str) -> dict:
        return {"answer": text}
