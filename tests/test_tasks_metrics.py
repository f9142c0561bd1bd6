"""Metrics against values computed by hand (the arithmetic is written next to each case)."""

import math

import numpy as np
import pytest

from lamina.tasks import TaskError, compute_metrics, get_task, main_score, normalize_answer, squad_metrics


def test_cola_matthews_from_2x2_table():
    refs = [1, 1, 1, 0, 0, 0]
    preds = [1, 1, 0, 0, 0, 1]
    # TP=2 (idx 0,1)  FN=1 (idx 2)  TN=2 (idx 3,4)  FP=1 (idx 5)
    # MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (4 - 1) / sqrt(3*3*3*3) = 3/9
    out = compute_metrics("cola", preds, refs)
    assert out == {"matthews_correlation": pytest.approx(1 / 3)}
    assert type(out["matthews_correlation"]) is float
    assert main_score(get_task("cola"), out) == pytest.approx(1 / 3)
    # constant predictions: MCC undefined -> 0.0 (sklearn's convention)
    assert compute_metrics("cola", [1] * 6, refs)["matthews_correlation"] == 0.0


def test_accuracy_tasks_and_logits():
    refs = [0, 1, 1, 0]
    preds = [0, 1, 0, 0]  # 3 of 4 right
    for task in ("sst2", "qnli", "rte", "wnli", "mnli"):
        assert compute_metrics(task, preds, refs) == {"accuracy": 0.75}
    logits = np.array([[2.0, -1.0], [0.1, 0.3], [5.0, 4.0], [0.0, -0.5]])  # argmax -> 0, 1, 0, 0
    assert compute_metrics("sst2", logits, refs)["accuracy"] == 0.75
    mnli_logits = np.eye(3)[[0, 2, 1]]
    assert compute_metrics("mnli-mm", mnli_logits, [0, 2, 2])["accuracy"] == pytest.approx(2 / 3)


def test_mrpc_qqp_f1_from_counts():
    refs = [1, 1, 1, 1, 0, 0]
    preds = [1, 1, 1, 0, 1, 0]
    # TP=3 FN=1 FP=1 TN=1: accuracy = 4/6; precision = 3/4, recall = 3/4, F1 = 2*P*R/(P+R) = 0.75
    # combined_score (GLUE's per-task score) = (4/6 + 0.75) / 2 = 0.708333...
    for task in ("mrpc", "qqp"):
        out = compute_metrics(task, preds, refs)
        assert out["accuracy"] == pytest.approx(4 / 6)
        assert out["f1"] == pytest.approx(0.75)
        assert out["combined_score"] == pytest.approx((4 / 6 + 0.75) / 2)
        assert main_score(task, out) == pytest.approx(0.7083333333)


def test_stsb_pearson_spearman_on_three_points():
    preds = [1.0, 2.0, 3.0]
    refs = [1.0, 2.0, 4.0]
    # means 2 and 7/3; deviations dx = (-1, 0, 1), dy = (-4/3, -1/3, 5/3)
    # sum dx*dy = 4/3 + 0 + 5/3 = 3; sum dx^2 = 2; sum dy^2 = (16 + 1 + 25)/9 = 14/3
    # Pearson r = 3 / sqrt(2 * 14/3) = 3 / sqrt(28/3) = 0.981980...
    # Spearman: ranks (1,2,3) vs (1,2,3) -> 1.0
    out = compute_metrics("stsb", np.array(preds).reshape(3, 1), refs)
    assert out["pearson"] == pytest.approx(3 / math.sqrt(28 / 3))
    assert out["spearman"] == pytest.approx(1.0)
    assert out["combined_score"] == pytest.approx((3 / math.sqrt(28 / 3) + 1.0) / 2)
    assert all(type(v) is float for v in out.values())
    # constant predictions: correlation undefined -> 0.0, never NaN
    assert compute_metrics("stsb", [2.0, 2.0, 2.0], refs)["pearson"] == 0.0


def test_text_classification_macro_f1():
    refs = [0, 0, 1, 1, 2, 2]
    preds = [0, 1, 1, 1, 2, 0]
    # class 0: TP=1 FP=1 FN=1 -> P=1/2 R=1/2 F1=1/2
    # class 1: TP=2 FP=1 FN=0 -> P=2/3 R=1   F1=2*(2/3)/(5/3)=4/5
    # class 2: TP=1 FP=0 FN=1 -> P=1   R=1/2 F1=2*(1/2)/(3/2)=2/3
    # macro = (1/2 + 4/5 + 2/3) / 3 = 0.655555...; accuracy = 4/6
    out = compute_metrics("chemprot", preds, refs)
    assert out["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert out["accuracy"] == pytest.approx(4 / 6)
    assert main_score("chemprot", out) == out["macro_f1"]


def test_squad_normalisation():
    assert normalize_answer("The Cat, sat!") == "cat sat"
    assert normalize_answer("an apple a day") == "apple day"
    assert normalize_answer("  Theatre  \n of the   absurd ") == "theatre of absurd"  # 'the' only as a word
    assert normalize_answer("Denver Broncos.") == "denver broncos"


def test_squad_em_f1_by_hand():
    refs = [
        {"id": "q1", "answers": {"text": ["Denver Broncos", "Broncos"], "answer_start": [0, 7]}},
        {"id": "q2", "answers": {"text": ["the Denver Broncos"], "answer_start": [0]}},
        {"id": "q3", "answers": {"text": ["Santa Clara"], "answer_start": [0]}},
    ]
    preds = {"q1": "the Broncos.", "q2": "Denver Broncos team"}
    # q1: normalised "broncos" equals gold 2 -> EM 1, F1 1 (max over golds)
    # q2: pred tokens [denver, broncos, team], gold [denver, broncos]: overlap 2, P = 2/3, R = 1,
    #     F1 = 2*(2/3)*1 / (2/3 + 1) = 0.8; EM 0
    # q3: no prediction -> 0 / 0 (as the official script)
    # EM = 100 * 1/3 = 33.33..., F1 = 100 * (1 + 0.8 + 0) / 3 = 60
    out = compute_metrics("squad", preds, refs)
    assert out["exact_match"] == pytest.approx(100 / 3)
    assert out["f1"] == pytest.approx(60.0)
    # a mapping id -> gold list works too, and aligned lists
    assert squad_metrics({"a": "Paris"}, {"a": ["paris", "Lyon"]}) == {"exact_match": 100.0, "f1": 100.0}
    assert squad_metrics(["x"], {"a": ["y"]}) == {"exact_match": 0.0, "f1": 0.0}


def test_metric_errors():
    with pytest.raises(TaskError, match="2 predictions for 3 references"):
        compute_metrics("sst2", [0, 1], [0, 1, 1])
    with pytest.raises(TaskError, match="main metric"):
        main_score("sst2", {"f1": 1.0})
    with pytest.raises(TaskError, match="unknown task"):
        compute_metrics("nope", [0], [0])
