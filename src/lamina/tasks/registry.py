"""One entry point for every task: look a task up by a forgiving name, load a split, encode it.

Names are matched case-insensitively with punctuation dropped, so "SST-2", "sst-2" and "sst2" are
the same task, and common aliases ("mnli-mm", "citation_intent", "scierc", "squad1.1") work.
"""

from __future__ import annotations

import re
from pathlib import Path

from .base import TaskError, TaskSpec, take
from .glue import GLUE_TASKS, load_glue
from .squad import load_squad, squad_spec
from .textcls import DOMAIN_TASKS, find_split_file, load_text_classification, text_task_spec

TASKS: dict[str, TaskSpec] = {**GLUE_TASKS, "squad": squad_spec, **DOMAIN_TASKS}

_ALIASES = {
    "mnlim": "mnli_matched", "mnlimatched": "mnli_matched",
    "mnlimm": "mnli_mismatched", "mnlimismatched": "mnli_mismatched",
    "squad1": "squad", "squad11": "squad", "squadv1": "squad", "squadv11": "squad",
    "rct20k": "rct", "pubmedrct": "rct",
    "citationintent": "acl_arc", "scierc": "sciie",
    "hyperpartisannews": "hyperpartisan",
    "agnews": "ag", "amazon": "helpfulness",
}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_LOOKUP = {_key(name): name for name in TASKS}
_LOOKUP.update(_ALIASES)


def task_names() -> list[str]:
    return list(TASKS)


def get_task(name: str | TaskSpec) -> TaskSpec:
    """TaskSpec by name (case/punctuation-insensitive); unknown names list the known ones."""
    if isinstance(name, TaskSpec):
        return name
    canonical = _LOOKUP.get(_key(str(name)))
    if canonical is None:
        raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)} "
                        "(or 'text' for your own .jsonl/.csv files)")
    return TASKS[canonical]


def _is_generic_text(name) -> bool:
    return isinstance(name, str) and _key(name) in ("text", "textclassification", "custom")


def load_examples(task_name: str | TaskSpec, data_dir_or_file, split: str = "train",
                  limit: int | None = None) -> list[dict]:
    """Load one split of any task.

    GLUE: ``data_dir_or_file`` is the GLUE root (or the task folder). SQuAD: a v1.1 JSON file or a
    folder holding ``train-v1.1.json`` / ``dev-v1.1.json``. Domain presets and ``"text"``: a folder
    with train/dev/test ``.jsonl``/``.csv`` files, or one such file (``split`` is then ignored).
    ``limit`` keeps the first N examples in file order.
    """
    path = Path(data_dir_or_file)
    if _is_generic_text(task_name):
        spec = text_task_spec(path)
        file = find_split_file(path, split) if path.is_dir() else path
        return load_text_classification(file, labels=spec.labels, limit=limit)
    spec = get_task(task_name)
    if spec.family == "glue":
        return load_glue(spec, path, split, limit=limit)
    if spec.family == "squad":
        file = path / spec.splits[spec.resolve_split(split)] if path.is_dir() else path
        if path.is_dir() and not file.is_file() and spec.resolve_split(split) == "train":
            raise TaskError.at(file, "file not found; without a train file, make one from the dev file with "
                                     "lamina.tasks.split_by_article")
        return take(load_squad(file), limit)
    if path.is_dir():
        folder = path / spec.folder if spec.folder and (path / spec.folder).is_dir() else path
        path = find_split_file(folder, spec.resolve_split(split))
    return load_text_classification(path, labels=spec.labels, limit=limit)


def encode_classification(examples: list[dict], tokenizer, spec: TaskSpec | str, max_length: int = 128) -> list[dict]:
    """Tokenise examples into python-list features for ``DataCollatorWithPadding``.

    Keeps ``token_type_ids`` only when the tokenizer produces them; ``labels`` is float for
    regression, int for classification, and omitted for unlabelled (test) examples.
    """
    spec = get_task(spec)
    if spec.kind == "qa":
        raise TaskError(f"{spec.name} is a QA task; use squad.prepare_train_features / prepare_eval_features")
    if not examples:
        return []
    texts = [ex["text"] for ex in examples]
    pairs = [ex.get("text_pair") for ex in examples]
    has_pair = [p is not None for p in pairs]
    if any(has_pair) and not all(has_pair):
        raise TaskError(f"{spec.name}: some examples have text_pair and some do not")
    enc = tokenizer(texts, pairs if all(has_pair) else None, truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    features = []
    for i, ex in enumerate(examples):
        feat = {k: list(enc[k][i]) for k in keys}
        label = ex.get("label")
        if label is not None:
            feat["labels"] = float(label) if spec.kind == "regression" else int(label)
        features.append(feat)
    return features
