"""The task-kind registry: a new kind is one file (a `TaskKind`, see `lamina.tasks.kind`) plus one
line in `_BUILTIN`; kinds defined outside lamina are added with `register_kind`."""

from __future__ import annotations

import importlib
import re

from lamina.errors import TaskError

# module:class of every built-in kind, in the order `adopt` is asked (loaded on first use: the kind
# files import the task modules, whose specs look their kind up here)
_BUILTIN = (
    "lamina.tasks.classification:ClassificationKind",
    "lamina.tasks.regression:RegressionKind",
    "lamina.tasks.qa:QAKind",
    "lamina.tasks.seq2seq:Seq2SeqKind",
    "lamina.tasks.sft:SFTKind",
)

KINDS: dict = {}
_BUILTIN_NAMES: set[str] = set()


def _builtin() -> None:
    for entry in _BUILTIN:
        module, _, cls = entry.partition(":")
        kind = getattr(importlib.import_module(module), cls)()
        KINDS.setdefault(kind.name, kind)
        _BUILTIN_NAMES.add(kind.name)


def register_kind(kind, replace: bool = False):
    """Make `kind` (a TaskKind instance) available to specs, `lamina train`, eval, predict and the search.
    Its `data_tasks` names become task names that read your own files of this kind."""
    if not getattr(kind, "name", ""):
        raise TaskError("a task kind needs a name")
    kinds()
    if kind.name in KINDS and not replace and KINDS[kind.name] is not kind:
        raise TaskError(f"a task kind named {kind.name!r} is already registered")
    clash = {_key(t) for t in kind.data_tasks} & {_key(t) for k in KINDS.values() if k.name != kind.name
                                                  for t in k.data_tasks}
    if clash:
        raise TaskError(f"task kind {kind.name!r}: data task name(s) {sorted(clash)} already taken")
    KINDS[kind.name] = kind
    return kind


def unregister_kind(name: str) -> None:
    """Remove a kind registered with `register_kind` (built-in kinds stay)."""
    kinds()
    if name in _BUILTIN_NAMES:
        raise TaskError(f"{name!r} is a built-in task kind")
    KINDS.pop(name, None)


def kinds() -> dict:
    if not KINDS:
        _builtin()
    return KINDS


def get_kind(name: str):
    found = kinds().get(name)
    if found is None:
        raise TaskError(f"unknown task kind {name!r}; known kinds: {', '.join(kinds())}")
    return found


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def data_task_kind(name):
    """The kind whose own-files task is called `name` ("text", "seq2seq", "sft"), or None."""
    if not isinstance(name, str):
        return None
    key = _key(name)
    return next((k for k in kinds().values() if key in {_key(t) for t in k.data_tasks}), None)


def for_model(spec, config):
    """The spec a model with `config` trains: a kind may adopt another kind's task (GLUE as
    text-to-text on encoder-decoder LMs); otherwise `spec` itself."""
    for kind in kinds().values():
        adopted = kind.adopt(spec, config)
        if adopted is not None:
            return adopted
    return spec
