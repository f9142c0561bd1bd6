"""Shared pieces of the task layer: the error type, the task description and small file readers.

Examples are plain dicts (not a framework Dataset) so loaders stay dependency-free and tests can
compare them directly:

* classification / regression: ``{"text", "text_pair", "label", "id"}`` (label int, float or None)
* question answering: ``{"id", "title", "question", "context", "answers": {"text", "answer_start"}}``
* text-to-text: ``{"source", "target", "id", "file", "line"}``; instruction tuning: ``{"prompt", "response"}`` or
  ``{"messages"}`` plus ``id``, ``file``, ``line``

What a task *kind* means (model class, features, metrics, predictions) lives in one file per kind
(``lamina.tasks.kind`` has the contract, ``lamina.tasks.kinds`` the registry).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from lamina.errors import LaminaError, TaskError  # noqa: F401  (TaskError's home was here)

# csv's default field limit (128 kB) refused a long document outright; --max-length cuts what the model sees
FIELD_LIMIT = 64 * 1024 * 1024
csv.field_size_limit(FIELD_LIMIT)

# Split names people type, mapped to the logical names used in TaskSpec.splits.
_SPLIT_ALIASES = {"dev": "validation", "val": "validation", "valid": "validation", "eval": "validation"}


@dataclass(frozen=True)
class DataFiles:
    """Explicit data files, one per split (``{"train": ..., "validation": ...}``), instead of a folder."""

    files: tuple[tuple[str, Path], ...]

    @classmethod
    def of(cls, mapping) -> "DataFiles":
        files = []
        for split, path in dict(mapping).items():
            if path is None:
                continue
            key = _SPLIT_ALIASES.get(str(split).lower(), str(split).lower())
            files.append((key, Path(path).expanduser()))
        if not files:
            raise TaskError("no data files given")
        return cls(tuple(files))

    def get(self, split: str) -> Path | None:
        key = _SPLIT_ALIASES.get(split.lower(), split.lower())
        return dict(self.files).get(key)

    def exists(self) -> bool:
        return all(p.is_file() for _, p in self.files)

    def missing(self) -> Path | None:
        return next((p for _, p in self.files if not p.is_file()), None)

    def is_file(self) -> bool:  # path-like: several files are never "one file"
        return False

    def is_dir(self) -> bool:
        return False

    def to_json(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.files}

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.files)


def data_source(data) -> "Path | DataFiles":
    """A data folder or file (str/Path) as a Path; a ``{split: file}`` mapping as DataFiles."""
    if isinstance(data, DataFiles):
        return data
    if isinstance(data, dict):
        return DataFiles.of(data)
    return Path(data).expanduser()


@dataclass(frozen=True)
class TaskSpec:
    """What a task is: its inputs, label set, metrics and split files (never the data itself)."""

    name: str
    kind: str
    text_fields: tuple[str, ...]
    labels: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ("accuracy",)
    main_metric: str = "accuracy"
    splits: dict[str, str] = field(default_factory=dict)
    # Human-readable names aligned with ``labels`` (e.g. "negative" for SST-2's "0"); used for id2label.
    label_names: tuple[str, ...] = ()
    # Which loader reads it ("glue", "squad", "text") and, for GLUE, the original folder name.
    family: str = "text"
    folder: str = ""
    # A task recast in another kind's terms keeps the original here (GLUE as text-to-text on T5: the
    # seq2seq spec's ``base`` is the classification spec whose label words and metrics it uses).
    base: "TaskSpec | None" = None

    def __post_init__(self):
        if not 1 <= len(self.text_fields) <= 2:
            raise TaskError(f"task {self.name!r}: text_fields must name 1 or 2 fields")
        self.type.check_spec(self)  # what the kind requires (labels, no labels, ...)
        if len(set(self.labels)) != len(self.labels):
            raise TaskError(f"task {self.name!r}: duplicate labels in {self.labels}")
        if self.label_names and len(self.label_names) != len(self.labels):
            raise TaskError(f"task {self.name!r}: label_names must align with labels")
        if self.main_metric not in self.metrics:
            raise TaskError(f"task {self.name!r}: main_metric {self.main_metric!r} not in {self.metrics}")

    def __hash__(self):  # dict field makes the generated hash fail; specs are identified by name
        return hash((self.name, self.kind, self.labels))

    @property
    def type(self):
        """The task kind object (``lamina.tasks.kind.TaskKind``) that knows how to train and score this task."""
        from .kinds import get_kind  # the kind files import this module

        return get_kind(self.kind)

    @property
    def num_labels(self) -> int:
        """Size of the model head, as the kind defines it (classification: the labels; others 1)."""
        return self.type.num_labels(self)

    @property
    def is_pair(self) -> bool:
        return len(self.text_fields) == 2

    @property
    def label2id(self) -> dict[str, int]:
        return {lab: i for i, lab in enumerate(self.labels)}

    @property
    def id2label(self) -> dict[int, str]:
        names = self.label_names or self.labels
        return dict(enumerate(names))

    def resolve_split(self, split: str) -> str:
        """Map a user split name ("dev", "validation", "dev_matched") to a key of ``splits``."""
        key = split.strip().lower().replace("-", "_")
        key = _SPLIT_ALIASES.get(key, key)
        if key in self.splits:
            return key
        if key == "validation" and "validation_matched" in self.splits:
            return "validation_matched"  # MNLI: plain "validation" means the matched dev set
        if key == "test" and "test_matched" in self.splits:
            return "test_matched"
        for logical, filename in self.splits.items():  # accept the file stem, e.g. "dev_matched"
            if key == Path(filename).stem.lower():
                return logical
        raise TaskError(f"task {self.name!r}: unknown split {split!r}; known splits: {', '.join(self.splits)}")


def require_file(path: Path) -> Path:
    """Fail early with the full path instead of a bare FileNotFoundError deep in a reader."""
    if not path.is_file():
        from lamina.util import not_a_file

        reason = not_a_file(path)
        raise TaskError.at(path, f"file {reason}" if reason == "not found" else reason)
    return path


def iter_tsv(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line_number, fields)`` of a tab-separated file, skipping blank lines.

    QUOTE_NONE because GLUE/MSR text contains unbalanced double quotes; utf-8-sig because the MRPC
    files start with a byte-order mark. With QUOTE_NONE a record is exactly one physical line.
    """
    require_file(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                yield reader.line_num, row
    except UnicodeDecodeError as e:
        raise TaskError.at(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise TaskError.at(path, f"unreadable TSV ({e})") from None


def take(examples: list[dict], limit: int | None) -> list[dict]:
    """First ``limit`` examples (file order), so smoke runs are reproducible."""
    if limit is None:
        return examples
    if limit < 0:
        raise TaskError(f"limit must be >= 0, got {limit}")
    return examples[:limit]
