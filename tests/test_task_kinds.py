"""The task-kind contract: a kind defined here, outside lamina (word tagging on a token-classification
head), registers through `lamina.tasks.register_kind` and trains, evaluates and predicts through
lamina.train / lamina.evaluate with no lamina file edited. docs/architecture.md ("Adding a task type")
walks through this same kind."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from lamina.errors import LaminaError
from lamina.tasks import EvalSet, LogitsKind, TaskError, TaskSpec, register_kind, unregister_kind
from lamina.tasks.textcls import _records
from test_train import FAST, WORDS, make_model_dir

SRC = Path(__file__).resolve().parents[1] / "src" / "lamina"


class TaggingKind(LogitsKind):
    """Tag every word: 1 if it is "good", else 0. Data: .jsonl lines {"words": [...], "tags": [...]}."""

    name = "tagging"
    data_tasks = ("tags",)  # `--task tags --data-dir D` reads D/train.jsonl and D/dev.jsonl
    input_help = "'words'"

    def spec_from_data(self, data):
        return TaskSpec(name="tags", kind=self.name, text_fields=("words",), metrics=("token_accuracy",),
                        main_metric="token_accuracy")

    def placeholder_spec(self, num_labels=2):
        return self.spec_from_data(None)

    def num_labels(self, spec):
        return 2

    def load_split(self, spec, data, split, limit=None):
        path = data / f"{'train' if split == 'train' else 'dev'}.jsonl"
        examples = [{"id": str(line), "words": rec["words"], "tags": rec.get("tags")} for line, rec in _records(path)]
        return examples[:limit], None

    def check_labelled(self, spec, examples, what):
        if any(ex["tags"] is None for ex in examples):
            raise TaskError(f"{what}: lines without tags")

    def model_class(self, spec, config):
        import transformers as T

        return T.AutoModelForTokenClassification, {"num_labels": 2}

    def claims(self, model):
        return "ForTokenClassification" in type(model).__name__

    def encode(self, spec, examples, tokenizer, options, train):
        enc = tokenizer([ex["words"] for ex in examples], is_split_into_words=True, truncation=True,
                        max_length=options.max_length)
        features = []
        for i, ex in enumerate(examples):
            words = enc.word_ids(i)  # first sub-token of each word carries its tag; the rest -100
            labels = [ex["tags"][w] if w is not None and (j == 0 or words[j - 1] != w) and ex["tags"] else -100
                      for j, w in enumerate(words)]
            features.append({"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                             "labels": labels})
        return features

    def collator(self, tokenizer, model):
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer)

    def evaluate(self, model, data):  # the plain pass pads per batch: score from labels kept beside
        from lamina.tasks.kind import run_model

        collate = self.collator(data.tokenizer, model)
        logits = run_model(model, data.tokenizer, data.features, data.options.batch_size, collate=collate)
        return self.score(data, logits, None)

    def score(self, data: EvalSet, predictions, label_ids):
        hits = total = 0
        for feature, row in zip(data.features, predictions):
            for j, gold in enumerate(feature["labels"]):
                if gold != -100:
                    hits += int(np.argmax(row[j]) == gold)
                    total += 1
        return {"token_accuracy": hits / max(total, 1)}

    def read_inputs(self, spec, path):
        return [{"id": str(rec.get("id", line)), "words": rec["words"], "tags": None} for line, rec in _records(path)]

    def predict(self, model, tokenizer, spec, examples, options):
        from lamina.tasks.kind import run_model

        features = [{k: v for k, v in f.items() if k != "labels"}
                    for f in self.encode(spec, examples, tokenizer, options, train=False)]
        rows = []
        for ex, feature, row in zip(examples, features, run_model(model, tokenizer, features, options.batch_size,
                                                                  collate=self.collator(tokenizer, model))):
            tags = np.argmax(row[:len(feature["input_ids"])], -1).tolist()
            rows.append({"id": ex["id"], "tags": tags})
        return rows


def write_tags(folder: Path) -> Path:
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train.jsonl", 64), ("dev.jsonl", 16)):
        lines = []
        for _ in range(n):
            words = [rng.choice(("good", *WORDS[2:12])) for _ in range(rng.randint(3, 7))]
            lines.append(json.dumps({"words": words, "tags": [int(w == "good") for w in words]}))
        (folder / name).write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def tagging():
    kind = register_kind(TaggingKind())
    yield kind
    unregister_kind(kind.name)


def test_a_kind_defined_outside_lamina_trains_evaluates_and_predicts(tagging, tmp_path):
    from lamina.evaluate import evaluate_adapter, predict_file
    from lamina.train import train

    model_dir = make_model_dir(tmp_path)
    data = write_tags(tmp_path / "tags")
    results = train(model_dir, "tags", "lora:r=4", data, tmp_path / "run", epochs=4, lr=2e-2, **FAST)
    assert results["kind"] == "tagging" and results["main_metric"] == "token_accuracy"
    first, best = results["evaluations"][0]["token_accuracy"], results["best"]["token_accuracy"]
    assert best > 0.9 and best >= first  # "good" is learnable from the word alone
    again = evaluate_adapter(tmp_path / "run", "tags")  # data folder taken from the run
    assert again["metrics"]["token_accuracy"] == pytest.approx(best)
    (tmp_path / "in.jsonl").write_text(json.dumps({"words": ["good", "film"], "id": "a"}) + "\n")
    rows = predict_file(tmp_path / "run", tmp_path / "in.jsonl")
    assert rows[0]["id"] == "a" and len(rows[0]["tags"]) == 4  # [CLS] good film [SEP]


def test_registration_is_checked(tagging):
    from lamina.tasks import get_kind, kinds

    assert get_kind("tagging") is tagging and "tagging" in kinds()
    with pytest.raises(TaskError, match="already registered"):
        register_kind(TaggingKind())

    class Clash(TaggingKind):
        name = "other"
        data_tasks = ("text",)  # the classification kind's own-files task

    with pytest.raises(TaskError, match="already taken"):
        register_kind(Clash())
    with pytest.raises(TaskError, match="built-in"):
        unregister_kind("classification")
    with pytest.raises(LaminaError, match="unknown task kind 'nope'"):
        TaskSpec(name="x", kind="nope", text_fields=("text",))


def test_no_branch_on_the_kind_outside_the_kind_files():
    """train, evaluate, the CLI, params and the search ask the kind; they never test which kind it is."""
    names = "qa|regression|classification|seq2seq|sft|tagging"
    pattern = re.compile(rf"""\.kind\s*[!=]=|\bkind\s+(not\s+)?in\b|[!=]=\s*["']({names})["']|["']({names})["']\s*[!=]=|"""
                         rf"""\bin\s*[(\[{{]\s*["']({names})["']|isinstance\([^)]*Kind\)""")
    files = [SRC / "train.py", SRC / "evaluate.py", *sorted((SRC / "cli").glob("*.py")),
             *sorted((SRC / "search").glob("*.py"))]
    hits = [f"{f.name}:{n}: {line.strip()}" for f in files
            for n, line in enumerate(f.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, hits


def test_qa_adapters_predict_answer_spans(tmp_path):
    """Extractive QA gets `lamina predict` through its kind: question + context in, the best span out."""
    from lamina.evaluate import predict_file
    from lamina.train import train
    from test_train import squad_file

    model_dir = make_model_dir(tmp_path, head="qa")
    data = tmp_path / "squad"
    data.mkdir()
    squad_file(data / "train-v1.1.json", 2, 0)
    squad_file(data / "dev-v1.1.json", 1, 1)
    train(model_dir, "squad", "lora:r=2", data, tmp_path / "run", epochs=1, doc_stride=8, **{**FAST, "max_length": 24})
    context = "the king and the queen who was very good"
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(json.dumps({"id": "q1", "question": "who ?", "context": context}) + "\n")
    rows = predict_file(tmp_path / "run", inputs)
    assert rows[0]["id"] == "q1" and rows[0]["answer"] in context and rows[0]["answer"].strip()
    (tmp_path / "bad.jsonl").write_text(json.dumps({"question": "who ?"}) + "\n")
    with pytest.raises(TaskError, match=r"bad.jsonl:1: .*'context'"):
        predict_file(tmp_path / "run", tmp_path / "bad.jsonl")
