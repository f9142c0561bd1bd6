"""The nine GLUE tasks, read from the ORIGINAL GLUE folder layout (``<root>/SST-2/train.tsv`` ...).

Files are parsed with exact per-task column knowledge and strict checks (every row must have the
header's column count; every label must be in the task's label set) because silent column shifts
are the classic way GLUE numbers go wrong. Label ids follow the order of ``TaskSpec.labels``, which
matches the ``nyu-mll/glue`` hub dataset, so a model trained on either source agrees on ids.
"""

from __future__ import annotations

import random
from pathlib import Path

from .base import TaskError, TaskSpec, iter_tsv, require_file, take

_SPLITS = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}
_BIN = ("0", "1")
_NLI2 = ("entailment", "not_entailment")


def _glue(name, kind, text_fields, labels, metrics, main, folder, label_names=(), splits=None):
    return TaskSpec(name=name, kind=kind, text_fields=text_fields, labels=labels, metrics=metrics,
                    main_metric=main, splits=dict(splits or _SPLITS), label_names=label_names,
                    family="glue", folder=folder)


_MNLI_SPLITS = {"train": "train.tsv", "validation_matched": "dev_matched.tsv",
                "validation_mismatched": "dev_mismatched.tsv", "test_matched": "test_matched.tsv",
                "test_mismatched": "test_mismatched.tsv"}
_MNLI_LABELS = ("entailment", "neutral", "contradiction")
_PAIR2 = ("accuracy", "f1", "combined_score")  # GLUE reports both; its per-task score is their mean

GLUE_TASKS: dict[str, TaskSpec] = {
    "cola": _glue("cola", "classification", ("sentence",), _BIN, ("matthews_correlation",),
                  "matthews_correlation", "CoLA", ("unacceptable", "acceptable")),
    "sst2": _glue("sst2", "classification", ("sentence",), _BIN, ("accuracy",), "accuracy", "SST-2",
                  ("negative", "positive")),
    "mrpc": _glue("mrpc", "classification", ("sentence1", "sentence2"), _BIN, _PAIR2, "combined_score",
                  "MRPC", ("not_equivalent", "equivalent")),
    "stsb": _glue("stsb", "regression", ("sentence1", "sentence2"), (), ("pearson", "spearman", "combined_score"),
                  "combined_score", "STS-B"),
    "qqp": _glue("qqp", "classification", ("question1", "question2"), _BIN, _PAIR2, "combined_score", "QQP",
                 ("not_duplicate", "duplicate")),
    "mnli": _glue("mnli", "classification", ("premise", "hypothesis"), _MNLI_LABELS, ("accuracy",), "accuracy",
                  "MNLI", splits=_MNLI_SPLITS),
    "qnli": _glue("qnli", "classification", ("question", "sentence"), _NLI2, ("accuracy",), "accuracy", "QNLI"),
    "rte": _glue("rte", "classification", ("sentence1", "sentence2"), _NLI2, ("accuracy",), "accuracy", "RTE"),
    "wnli": _glue("wnli", "classification", ("sentence1", "sentence2"), _BIN, ("accuracy",), "accuracy", "WNLI",
                  ("not_entailment", "entailment")),
}
# MNLI evaluated on one dev set only: "validation" means that set (the "mnli-m"/"mnli-mm" of papers).
GLUE_TASKS["mnli_matched"] = _glue(
    "mnli_matched", "classification", ("premise", "hypothesis"), _MNLI_LABELS, ("accuracy",), "accuracy", "MNLI",
    splits={"train": "train.tsv", "validation": "dev_matched.tsv", "test": "test_matched.tsv"})
GLUE_TASKS["mnli_mismatched"] = _glue(
    "mnli_mismatched", "classification", ("premise", "hypothesis"), _MNLI_LABELS, ("accuracy",), "accuracy", "MNLI",
    splits={"train": "train.tsv", "validation": "dev_mismatched.tsv", "test": "test_mismatched.tsv"})

# Column names in each task's header: (text column(s), label column). Test files use the same text
# columns, carry an "index" (QQP: "id") column and no label.
_COLUMNS = {
    "cola": (("sentence",), "label"),  # only CoLA's test.tsv has a header ("index\tsentence")
    "sst2": (("sentence",), "label"),
    "mrpc": (("#1 String", "#2 String"), "Quality"),
    # STS-B has 10 columns (sentence1/sentence2 are the 8th/9th, score the last); MNLI train has 12,
    # dev 16 (sentence1/sentence2 9th/10th, gold_label last). Looking them up by header name is the
    # same thing, and the strict column count catches stray tabs.
    "stsb": (("sentence1", "sentence2"), "score"),
    "qqp": (("question1", "question2"), "is_duplicate"),
    "mnli": (("sentence1", "sentence2"), "gold_label"),
    "qnli": (("question", "sentence"), "label"),
    "rte": (("sentence1", "sentence2"), "label"),
    "wnli": (("sentence1", "sentence2"), "label"),
}
_COLA_COLUMNS = ("source", "label", "original mark", "sentence")  # headerless train/dev
MRPC_RAW_COLUMNS = ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")
MRPC_DEV_SIZE = 408
MRPC_SPLIT_SEED = 0


def glue_task(name: str) -> TaskSpec:
    try:
        return GLUE_TASKS[name]
    except KeyError:
        raise TaskError(f"unknown GLUE task {name!r}; known: {', '.join(GLUE_TASKS)}") from None


def glue_task_dir(spec: TaskSpec, data_dir) -> Path:
    """``data_dir`` may be the GLUE root (holding ``SST-2/``) or the task folder itself."""
    root = Path(data_dir)
    sub = root / spec.folder
    if sub.is_dir():
        return sub
    own_files = [*spec.splits.values(), "msr_paraphrase_train.txt", "msr_paraphrase_test.txt"]
    return root if any((root / f).is_file() for f in own_files) else sub  # errors name the GLUE path


def load_glue(task: str | TaskSpec, data_dir, split: str, limit: int | None = None) -> list[dict]:
    """Read one split of a GLUE task from the original TSV files into example dicts."""
    spec = task if isinstance(task, TaskSpec) else glue_task(task)
    key = spec.resolve_split(split)
    folder = glue_task_dir(spec, data_dir)
    path = folder / spec.splits[key]
    if spec.folder == "MRPC" and not path.is_file() and (folder / "msr_paraphrase_train.txt").is_file():
        return take(load_mrpc_raw(folder, key), limit)  # only the raw MSR files are there
    base = "mnli" if spec.folder == "MNLI" else spec.name
    if base == "cola" and not key.startswith("test"):
        examples = _read_cola(path, spec)
    else:
        examples = _read_headed(path, spec, base, labelled=not key.startswith("test"))
    if not examples:
        raise TaskError.at(path, "no data rows (empty dataset)")
    return take(examples, limit)


def _to_label(spec: TaskSpec, raw: str, path, line: int, column):
    """Map a label string through the spec; regression scores become floats."""
    value = raw.strip()
    if spec.kind == "regression":
        try:
            score = float(value)
        except ValueError:
            raise TaskError.at(path, f"score {raw!r} is not a number", line, column) from None
        if score != score or score in (float("inf"), float("-inf")):
            raise TaskError.at(path, f"score {raw!r} is not a finite number", line, column)
        return score
    label_id = spec.label2id.get(value)
    if label_id is None:
        raise TaskError.at(path, f"label {raw!r} not in label set {list(spec.labels)}", line, column)
    return label_id


def _example(text, pair, label, ex_id) -> dict:
    return {"text": text, "text_pair": pair, "label": label, "id": str(ex_id)}


def _read_cola(path: Path, spec: TaskSpec) -> list[dict]:
    out = []
    for line, row in iter_tsv(path):
        if len(row) != len(_COLA_COLUMNS):
            missing = _COLA_COLUMNS[len(row)] if len(row) < len(_COLA_COLUMNS) else None
            what = f"missing column {missing!r}" if missing else "too many columns"
            raise TaskError.at(path, f"{what}: CoLA rows have 4 tab-separated columns {_COLA_COLUMNS}, "
                                     f"found {len(row)}", line)
        out.append(_example(row[3], None, _to_label(spec, row[1], path, line, "label"), len(out)))
    return out


def _read_headed(path: Path, spec: TaskSpec, base: str, labelled: bool) -> list[dict]:
    text_cols, label_col = _COLUMNS[base]
    rows = iter_tsv(path)
    first = next(rows, None)
    if first is None:
        raise TaskError.at(path, "empty file (no header, no data)")
    header_line, header = first
    index = {name.strip(): i for i, name in enumerate(header)}
    needed = list(text_cols) + ([label_col] if labelled else [])
    for col in needed:
        if col not in index:
            raise TaskError.at(path, f"missing column {col!r}; header is {header}", header_line)
    id_col = next((c for c in ("index", "id") if c in index), None)
    mrpc_ids = "#1 ID" in index and "#2 ID" in index  # same ids as load_mrpc_raw: "<#1 ID>-<#2 ID>"
    has_label = label_col in index
    out = []
    for line, row in rows:
        if len(row) != len(header):
            raise TaskError.at(path, f"expected {len(header)} tab-separated columns as in the header, "
                                     f"found {len(row)}", line)
        label = _to_label(spec, row[index[label_col]], path, line, label_col) if has_label else None
        pair = row[index[text_cols[1]]] if len(text_cols) == 2 else None
        if mrpc_ids:
            ex_id = f"{row[index['#1 ID']].strip()}-{row[index['#2 ID']].strip()}"
        else:
            ex_id = row[index[id_col]] if id_col else len(out)
        out.append(_example(row[index[text_cols[0]]], pair, label, ex_id))
    return out


def load_mrpc_raw(data_dir, split: str, limit: int | None = None) -> list[dict]:
    """MRPC from the raw MSR files (``msr_paraphrase_train.txt`` / ``msr_paraphrase_test.txt``).

    train/validation: if ``dev_ids.tsv`` (GLUE's list of ``#1 ID<TAB>#2 ID`` pairs) is present, use
    GLUE's official split, which reproduces GLUE's train.tsv (3,668) / dev.tsv (408) exactly.
    Otherwise a documented stand-in: ``random.Random(0).sample(range(n), 408)`` picks the dev rows
    and both parts keep file order. "test" is ``msr_paraphrase_test.txt`` (1,725 labelled rows).
    """
    spec = GLUE_TASKS["mrpc"]
    key = spec.resolve_split(split)
    folder = glue_task_dir(spec, data_dir)
    name = "msr_paraphrase_test.txt" if key == "test" else "msr_paraphrase_train.txt"
    path = folder / name
    rows = _read_mrpc_rows(path, spec)
    if key != "test":
        dev_ids_path = folder / "dev_ids.tsv"
        if dev_ids_path.is_file():
            dev_pairs = {(r[0].strip(), r[1].strip()) for _, r in iter_tsv(dev_ids_path) if len(r) >= 2}
            in_dev = [(ids in dev_pairs) for ids, _ in rows]
        else:
            if len(rows) <= MRPC_DEV_SIZE:
                raise TaskError.at(path, f"only {len(rows)} rows; cannot hold out {MRPC_DEV_SIZE} for dev")
            picked = set(random.Random(MRPC_SPLIT_SEED).sample(range(len(rows)), MRPC_DEV_SIZE))
            in_dev = [i in picked for i in range(len(rows))]
        want_dev = key == "validation"
        rows = [r for r, d in zip(rows, in_dev) if d == want_dev]
    examples = [ex for _, ex in rows]
    if not examples:
        raise TaskError.at(path, f"no data rows for split {split!r} (empty dataset)")
    return take(examples, limit)


def _read_mrpc_rows(path: Path, spec: TaskSpec) -> list[tuple[tuple[str, str], dict]]:
    rows = iter_tsv(require_file(path))
    first = next(rows, None)
    if first is None:
        raise TaskError.at(path, "empty file (no header, no data)")
    header_line, header = first
    index = {name.strip(): i for i, name in enumerate(header)}
    for col in MRPC_RAW_COLUMNS:
        if col not in index:
            raise TaskError.at(path, f"missing column {col!r}; header is {header}", header_line)
    out = []
    for line, row in rows:
        if len(row) != len(header):
            raise TaskError.at(path, f"expected {len(header)} tab-separated columns, found {len(row)}", line)
        ids = (row[index["#1 ID"]].strip(), row[index["#2 ID"]].strip())
        label = _to_label(spec, row[index["Quality"]], path, line, "Quality")
        out.append((ids, _example(row[index["#1 String"]], row[index["#2 String"]], label, f"{ids[0]}-{ids[1]}")))
    return out


# Hub field names (nyu-mll/glue): text fields per config; label ids already follow our label order.
_HUB_FIELDS = {
    "cola": ("sentence",), "sst2": ("sentence",), "mrpc": ("sentence1", "sentence2"),
    "stsb": ("sentence1", "sentence2"), "qqp": ("question1", "question2"), "mnli": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"), "rte": ("sentence1", "sentence2"), "wnli": ("sentence1", "sentence2"),
}


def load_glue_hub(task: str | TaskSpec, split: str, limit: int | None = None) -> list[dict]:
    """Same example dicts from the ``nyu-mll/glue`` hub dataset, for users who are online.

    Needs the optional ``datasets`` package and network access; the tests never call it.
    """
    spec = task if isinstance(task, TaskSpec) else glue_task(task)
    key = spec.resolve_split(split)
    try:
        import datasets  # noqa: PLC0415 - optional dependency, imported only when used
    except ImportError:
        raise TaskError("load_glue_hub needs the 'datasets' package: pip install datasets "
                        "(or pip install 'lamina[data]')") from None
    config = "mnli" if spec.folder == "MNLI" else spec.name
    hub_split = key
    if spec.name in ("mnli_matched", "mnli_mismatched") and key != "train":
        hub_split = f"{key}_{spec.name.split('_')[1]}"
    ds = datasets.load_dataset("nyu-mll/glue", config, split=hub_split)
    fields = _HUB_FIELDS[config]
    out = []
    for i, row in enumerate(ds):
        if limit is not None and i >= limit:
            break
        label = row.get("label")
        if label is None or key.startswith("test"):
            label = None  # hub test splits carry -1 placeholders
        else:
            label = int(label) if spec.kind == "classification" else float(label)
        pair = row[fields[1]] if len(fields) == 2 else None
        out.append(_example(row[fields[0]], pair, label, row.get("idx", i)))
    if not out:
        raise TaskError(f"nyu-mll/glue {config}/{hub_split}: empty dataset")
    return out
