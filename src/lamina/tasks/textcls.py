"""Text classification from ``.jsonl`` or ``.csv`` files, plus the DAPT domain-task presets.

The presets are the classification datasets of Gururangan et al. 2020 ("Don't Stop Pretraining"),
shipped by its authors as ``train.jsonl`` / ``dev.jsonl`` / ``test.jsonl`` with fields ``text`` and
``label``. Label order in each preset is fixed here, so label ids never depend on which file was
read first. Note: the DAPT paper reports micro-F1 for ChemProt and RCT (equal to accuracy for
single-label data, which is also reported) and macro-F1 for the others; lamina uses macro-F1 as the
main metric throughout, as the UniPELT+prompt study does.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Iterator

from .base import TaskError, TaskSpec, require_file, take

_TEXT_METRICS = ("accuracy", "macro_f1")
_DOMAIN_SPLITS = {"train": "train.jsonl", "validation": "dev.jsonl", "test": "test.jsonl"}
_SPLIT_STEMS = {"train": ("train",), "validation": ("dev", "validation", "val"), "test": ("test",)}
_EXTENSIONS = (".jsonl", ".csv")


def _domain(name, labels, folder, label_names=()):
    return TaskSpec(name=name, kind="classification", text_fields=("text",), labels=tuple(labels),
                    metrics=_TEXT_METRICS, main_metric="macro_f1", splits=dict(_DOMAIN_SPLITS),
                    label_names=tuple(label_names), family="text", folder=folder)


DOMAIN_TASKS: dict[str, TaskSpec] = {
    "chemprot": _domain("chemprot", (
        "ACTIVATOR", "AGONIST", "AGONIST-ACTIVATOR", "AGONIST-INHIBITOR", "ANTAGONIST", "DOWNREGULATOR",
        "INDIRECT-DOWNREGULATOR", "INDIRECT-UPREGULATOR", "INHIBITOR", "PRODUCT-OF", "SUBSTRATE",
        "SUBSTRATE_PRODUCT-OF", "UPREGULATOR"), "chemprot"),
    "rct": _domain("rct", ("BACKGROUND", "OBJECTIVE", "METHODS", "RESULTS", "CONCLUSIONS"), "rct-20k"),
    "acl_arc": _domain("acl_arc", ("Background", "Uses", "CompareOrContrast", "Motivation", "Extends", "Future"),
                       "citation_intent"),
    "sciie": _domain("sciie", ("COMPARE", "CONJUNCTION", "EVALUATE-FOR", "FEATURE-OF", "HYPONYM-OF", "PART-OF",
                               "USED-FOR"), "sciie"),
    "hyperpartisan": _domain("hyperpartisan", ("false", "true"), "hyperpartisan_news"),
    "ag": _domain("ag", ("1", "2", "3", "4"), "ag", ("World", "Sports", "Business", "Sci/Tech")),
    "helpfulness": _domain("helpfulness", ("unhelpful", "helpful"), "amazon"),
    "imdb": _domain("imdb", ("0", "1"), "imdb", ("negative", "positive")),
}


def label_string(value, path=None, line=None, field: str = "label") -> str | None:
    """JSON/CSV label value -> the string used in label sets (1 -> "1", true -> "true"). A label is one
    value: a list or an object is refused (naming file and line when given)."""
    if value is None:
        return None
    if isinstance(value, (list, dict)) or (isinstance(value, float) and value != value):
        what = "a list" if isinstance(value, list) else "an object" if isinstance(value, dict) else "NaN"
        message = f"a label must be one string or number, found {what} {json.dumps(value)[:40]}"
        raise (TaskError.at(path, message, line, field) if path is not None else TaskError(message))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _records(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` from a .jsonl or .csv file."""
    require_file(path)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv", ".tsv"):
        raise TaskError.at(path, "unsupported file type; use .jsonl or .csv")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            if suffix in (".jsonl", ".json"):
                for line_no, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise TaskError.at(path, f"bad JSON line: {e.msg}", line_no, e.colno) from None
                    except RecursionError:
                        raise TaskError.at(path, "JSON line nested too deeply (a record is an object of texts and a label)",
                                           line_no) from None
                    if not isinstance(record, dict):
                        raise TaskError.at(path, "each JSON line must be an object", line_no)
                    yield line_no, record
            else:
                reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
                header = reader.fieldnames or []
                for row in reader:
                    if None in row:  # more values than header columns
                        raise TaskError.at(path, f"more fields than the {len(header)} header columns",
                                           reader.line_num)
                    yield reader.line_num, {"__header__": header, **row}
    except UnicodeDecodeError as e:
        raise TaskError.at(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise TaskError.at(path, f"unreadable CSV ({e})") from None


def _field(record: dict, name: str, path, line, required: bool = True):
    """A field of a record; missing (or an empty CSV cell) raises naming file, line and field."""
    header = record.get("__header__")
    if header is not None and name not in header:
        if required:
            raise TaskError.at(path, f"missing column {name!r}; header is {header}", 1)
        return None
    value = record.get(name)
    if value is None and required:
        raise TaskError.at(path, f"missing field {name!r}", line)
    return value


def _text(value, path, line, field: str) -> str:
    """A text field must be a string (a number, list or object would be silently stringified)."""
    if not isinstance(value, str):
        kind = {list: "a list", dict: "an object", bool: "a boolean"}.get(type(value), "a number")
        raise TaskError.at(path, f"must be a string, found {kind} {json.dumps(value)[:40]}", line, field)
    return value


def _sort_labels(values) -> tuple[str, ...]:
    """Sorted label set; integer-like labels sort numerically so "10" comes after "9"."""
    values = set(values)
    try:
        return tuple(sorted(values, key=int))
    except ValueError:
        return tuple(sorted(values))


def infer_labels(path, label_field: str = "label") -> tuple[str, ...]:
    """The sorted set of label strings in a file (normally the train file)."""
    path = Path(path)
    found, kinds = [], {}  # JSON kind of the labels -> first line with it
    for line, rec in _records(path):
        raw = _field(rec, label_field, path, line)
        if isinstance(raw, float) and raw.is_integer() is False and raw == raw:
            raise TaskError.at(path, f"label {raw} is not a class: classification labels are strings or whole "
                               "numbers (a score calls for a regression task)", line, label_field)
        kind = "true/false" if isinstance(raw, bool) else "number" if isinstance(raw, (int, float)) else "text"
        if raw is not None:
            kinds.setdefault(kind, line)
        found.append(label_string(raw, path, line, label_field))
    if len(kinds) > 1:
        (a, line_a), (b, line_b) = sorted(kinds.items(), key=lambda kv: kv[1])[:2]
        raise TaskError.at(path, f"labels mix {a} values (line {line_a}) with {b} values; give every label "
                           "the same kind", line_b, label_field)
    if not found:
        raise TaskError.at(path, "no data rows (empty dataset)")
    return _sort_labels(found)


def find_split_file(folder, split: str) -> Path:
    """``train`` / ``validation`` / ``test`` file in a folder (dev.jsonl, validation.csv, ...)."""
    folder = Path(folder)
    key = {"dev": "validation", "val": "validation", "eval": "validation"}.get(split, split)
    for stem in _SPLIT_STEMS.get(key, (key,)):
        found = [folder / f"{stem}{ext}" for ext in _EXTENSIONS if (folder / f"{stem}{ext}").is_file()]
        if len(found) > 1:  # which one trains must not be lamina's guess
            raise TaskError.at(folder, f"both {' and '.join(p.name for p in found)}: keep one {split} file "
                                       "(or pass --train-file / --dev-file)")
        if found:
            return found[0]
    raise TaskError.at(folder, f"no {split} file (looked for {', '.join(_SPLIT_STEMS.get(key, (key,)))} with "
                               f"extensions {', '.join(_EXTENSIONS)})")


def _label_source(path: Path) -> Path:
    """Where an unspecified label set comes from: a sibling train file if there is one."""
    try:
        return find_split_file(path.parent, "train")
    except TaskError:
        return path


def load_text_classification(path, label_field: str = "label", text_field: str = "text",
                             labels=None, text_pair_field: str = "text_pair", require_labels: bool = True,
                             limit: int | None = None) -> list[dict]:
    """Read a .jsonl/.csv file into ``{"text", "text_pair", "label", "id"}`` dicts.

    ``labels`` (strings, in id order) defaults to the sorted label set of the train file next to
    ``path`` (or of ``path`` itself), so dev and test map labels exactly like train.
    """
    path = Path(path)
    if labels is None and require_labels:
        labels = infer_labels(_label_source(path), label_field)
    label2id = {label_string(lab): i for i, lab in enumerate(labels or ())}
    examples = []
    for line, rec in _records(path):
        text = _text(_field(rec, text_field, path, line), path, line, text_field)
        pair = _field(rec, text_pair_field, path, line, required=False)
        pair = None if pair is None else _text(pair, path, line, text_pair_field)
        raw = _field(rec, label_field, path, line, required=require_labels)
        label = None
        if raw is not None and (require_labels or label2id):
            key = label_string(raw, path, line, label_field)
            if key not in label2id:
                raise TaskError.at(path, f"label {raw!r} not in label set {list(label2id)}", line, label_field)
            label = label2id[key]
        ex_id = rec.get("id", len(examples))
        if isinstance(ex_id, (list, dict, bool)) or ex_id is None:
            raise TaskError.at(path, f"an id must be a string or a number, found {json.dumps(ex_id)[:40]}", line, "id")
        examples.append({"text": str(text), "text_pair": None if pair in (None, "") else str(pair),
                         "label": label, "id": str(ex_id)})
    if not examples:
        raise TaskError.at(path, "no data rows (empty dataset)")
    return take(examples, limit)


def text_task_spec(path, labels=None, name: str = "text", label_field: str = "label") -> TaskSpec:
    """A TaskSpec for a custom dataset (a folder with train/dev files, or one file)."""
    path = Path(path)
    source = find_split_file(path, "train") if path.is_dir() else _label_source(path)
    if labels is None:
        labels = infer_labels(source, label_field)
    labels = tuple(label_string(lab) for lab in labels)
    if len(labels) < 2:
        raise TaskError.at(source, f"found {len(labels)} label(s) {list(labels)}; classification needs 2 or more")
    splits = {}
    folder = path if path.is_dir() else path.parent
    for key in ("train", "validation", "test"):
        try:
            splits[key] = find_split_file(folder, key).name
        except TaskError:
            pass
    return TaskSpec(name=name, kind="classification", text_fields=("text",), labels=labels, metrics=_TEXT_METRICS,
                    main_metric="macro_f1", splits=splits, family="text")
