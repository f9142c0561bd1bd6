"""Task metrics with the conventions of the papers lamina reproduces (GLUE, SQuAD v1.1, DAPT).

All values are python floats. Classification metrics are fractions in 0..1 (as GLUE reports them);
SQuAD exact match / F1 are percentages 0..100 like the official v1.1 evaluation script. A correlation
that is undefined (constant predictions) counts as 0.0, the same convention sklearn uses for MCC, so a
design search never has to sort NaNs.
"""

from __future__ import annotations

import collections
import math
import re
import string
from typing import Mapping, Sequence

import numpy as np

from .base import TaskError, TaskSpec

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def _spec(spec_or_name) -> TaskSpec:
    if isinstance(spec_or_name, TaskSpec):
        return spec_or_name
    from .registry import get_task  # local import: registry imports this module

    return get_task(spec_or_name)


# --------------------------------------------------------------------------- classification


def _class_ids(predictions) -> np.ndarray:
    """Accept class ids or logits (n, num_labels) and return class ids."""
    arr = np.asarray(predictions)
    if arr.ndim == 2:
        return arr.argmax(axis=-1)
    if arr.ndim != 1:
        raise TaskError(f"classification predictions must be 1-D ids or 2-D logits, got shape {arr.shape}")
    return arr.astype(np.int64)


def _scores(predictions) -> np.ndarray:
    """Accept regression outputs shaped (n,) or (n, 1)."""
    arr = np.asarray(predictions, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise TaskError(f"regression predictions must have shape (n,) or (n, 1), got {arr.shape}")
    return arr


def _finite(value) -> float:
    value = float(value)
    return 0.0 if math.isnan(value) else value


def _correlation(kind: str, x: np.ndarray, y: np.ndarray) -> float:
    from scipy import stats

    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return 0.0  # undefined; see module docstring
    fn = stats.pearsonr if kind == "pearson" else stats.spearmanr
    return _finite(fn(x, y)[0])


def _classification_metrics(names: Sequence[str], preds: np.ndarray, refs: np.ndarray) -> dict[str, float]:
    from sklearn import metrics as skm

    out: dict[str, float] = {}
    for name in names:
        if name == "accuracy":
            out[name] = float(skm.accuracy_score(refs, preds))
        elif name == "f1":  # binary F1 of the positive class (id 1), as GLUE reports for MRPC/QQP
            out[name] = float(skm.f1_score(refs, preds, pos_label=1, average="binary", zero_division=0))
        elif name == "macro_f1":  # unweighted mean over classes seen in references or predictions
            out[name] = float(skm.f1_score(refs, preds, average="macro", zero_division=0))
        elif name == "micro_f1":
            out[name] = float(skm.f1_score(refs, preds, average="micro", zero_division=0))
        elif name == "matthews_correlation":
            out[name] = _finite(skm.matthews_corrcoef(refs, preds))
    return out


def _combined(out: dict[str, float], names: Sequence[str]) -> None:
    if "combined_score" in names:
        parts = [v for k, v in out.items() if k != "combined_score"]
        out["combined_score"] = float(sum(parts) / len(parts))


# --------------------------------------------------------------------------- SQuAD v1.1


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lower case, drop punctuation, drop a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def squad_exact(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def squad_f1(prediction: str, gold: str) -> float:
    """Token-overlap F1 between normalised prediction and gold (0..1)."""
    pred_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _gold_texts(references) -> dict[str, list[str]]:
    """References as example dicts (with ``answers``) or a mapping id -> list of gold strings."""
    if isinstance(references, Mapping):
        return {str(k): list(v) for k, v in references.items()}
    golds = {}
    for ex in references:
        golds[str(ex["id"])] = list(ex["answers"]["text"])
    return golds


def squad_metrics(predictions, references) -> dict[str, float]:
    """Official v1.1 EM/F1 in percent; max over gold answers; unanswered questions score 0."""
    golds = _gold_texts(references)
    if not golds:
        raise TaskError("squad metrics: no reference questions")
    if not isinstance(predictions, Mapping):  # a list aligned with the references
        predictions = list(predictions)
        if len(predictions) != len(golds):
            raise TaskError(f"squad metrics: {len(predictions)} predictions for {len(golds)} questions")
        predictions = dict(zip(golds, predictions))
    em = f1 = 0.0
    for qid, answers in golds.items():
        pred = predictions.get(qid)
        if pred is None or not answers:
            continue
        em += max(squad_exact(pred, g) for g in answers)
        f1 += max(squad_f1(pred, g) for g in answers)
    n = len(golds)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n}


# --------------------------------------------------------------------------- entry points


def compute_metrics(spec_or_name, predictions, references) -> dict[str, float]:
    """All metrics of a task, by its spec (or name): see ``TaskSpec.metrics``."""
    spec = _spec(spec_or_name)
    if spec.kind == "qa":
        return squad_metrics(predictions, references)
    if spec.kind == "regression":
        preds, refs = _scores(predictions), np.asarray(references, dtype=np.float64).reshape(-1)
    else:
        preds, refs = _class_ids(predictions), np.asarray(references).reshape(-1).astype(np.int64)
    if len(preds) != len(refs):
        raise TaskError(f"{spec.name}: {len(preds)} predictions for {len(refs)} references")
    if len(refs) == 0:
        raise TaskError(f"{spec.name}: no references to score")
    if spec.kind == "regression":
        out = {m: _correlation(m, preds, refs) for m in spec.metrics if m in ("pearson", "spearman")}
    else:
        out = _classification_metrics(spec.metrics, preds, refs)
    _combined(out, spec.metrics)
    unknown = [m for m in spec.metrics if m not in out]
    if unknown:
        raise TaskError(f"{spec.name}: no implementation for metric(s) {unknown}")
    return out


def main_score(spec: TaskSpec | str, metrics: Mapping[str, float]) -> float:
    """The one number used to compare runs of a task (``TaskSpec.main_metric``)."""
    spec = _spec(spec)
    if spec.main_metric not in metrics:
        raise TaskError(f"{spec.name}: main metric {spec.main_metric!r} missing from {sorted(metrics)}")
    return float(metrics[spec.main_metric])


def trainer_metrics_fn(spec: TaskSpec | str):
    """A ``compute_metrics`` callable for a Hugging Face Trainer (classification/regression)."""
    spec = _spec(spec)

    def fn(eval_pred):
        preds, labels = eval_pred.predictions, eval_pred.label_ids
        if isinstance(preds, tuple):  # some models also return hidden states
            preds = preds[0]
        return compute_metrics(spec, preds, labels)

    return fn
