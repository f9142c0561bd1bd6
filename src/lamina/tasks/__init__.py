"""Tasks: GLUE, SQuAD v1.1 and text classification — loaders, specs, metrics, encoding — and the task
kinds (one file each: classification, regression, qa, seq2seq, sft; `kind.py` is the contract,
`kinds.py` the registry).

Everything is read from local files in the datasets' original formats; ``load_glue_hub`` is the only
function that needs the network (and the optional ``datasets`` package).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .base import DataFiles, TaskError, TaskSpec
from .kind import EvalSet, LogitsKind, TaskKind, TaskOptions
from .kinds import data_task_kind, get_kind, kinds, register_kind, unregister_kind
from .glue import GLUE_TASKS, load_glue, load_glue_hub, load_mrpc_raw
from .metrics import compute_metrics, main_score, normalize_answer, squad_metrics, trainer_metrics_fn
from .registry import TASKS, encode_classification, get_task, load_examples, task_names
from .squad import (
    load_squad,
    model_inputs,
    postprocess_predictions,
    prepare_eval_features,
    prepare_train_features,
    split_by_article,
    squad_spec,
)
from .textcls import DOMAIN_TASKS, infer_labels, load_text_classification, text_task_spec


def bundled_sst2_dir() -> Path:
    """Folder of the SST-2 sample shipped with lamina (GLUE layout: train.tsv 2,000 rows, dev.tsv 872).

    Lets the demo and tests run without any download; pass it to ``load_examples("sst2", ...)``.
    """
    folder = resources.files("lamina").joinpath("data", "sst2_sample")
    path = Path(str(folder))
    if not (path / "train.tsv").is_file():
        raise TaskError.at(path, "bundled SST-2 sample missing (lamina installed without its package data?)")
    return path


__all__ = [
    "TaskError", "TaskSpec", "DataFiles", "TaskKind", "LogitsKind", "TaskOptions", "EvalSet",
    "get_kind", "kinds", "register_kind", "unregister_kind", "data_task_kind", "TASKS", "GLUE_TASKS", "DOMAIN_TASKS", "squad_spec",
    "get_task", "task_names", "load_examples", "encode_classification",
    "load_glue", "load_glue_hub", "load_mrpc_raw",
    "load_squad", "split_by_article", "prepare_train_features", "prepare_eval_features", "model_inputs",
    "postprocess_predictions",
    "load_text_classification", "infer_labels", "text_task_spec",
    "compute_metrics", "main_score", "normalize_answer", "squad_metrics", "trainer_metrics_fn",
    "bundled_sst2_dir",
]
