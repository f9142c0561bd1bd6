"""SQuAD v1.1: JSON loading, article split, window features and span decoding (offline tokenizer)."""

import json

import numpy as np
import pytest
from transformers import BertTokenizerFast

from lamina.tasks import (
    TaskError,
    compute_metrics,
    load_examples,
    load_squad,
    model_inputs,
    postprocess_predictions,
    prepare_eval_features,
    prepare_train_features,
    split_by_article,
)

WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
         "upsilon which letters letter is a the . ? ,").split()
LONG_CONTEXT = ("Alpha beta gamma delta epsilon zeta eta theta iota kappa Lambda Mu nu xi omicron pi rho sigma "
                "tau upsilon.")


@pytest.fixture
def tokenizer(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    tok = BertTokenizerFast(vocab=str(vocab))  # transformers 5 takes the vocab file as `vocab`
    assert len(tok.get_vocab()) == 5 + len(WORDS) and tok.is_fast
    return tok


def squad_json(articles, version="1.1"):
    return {"version": version, "data": [
        {"title": title, "paragraphs": [{"context": ctx, "qas": [
            {"id": qid, "question": q, "answers": [{"text": a, "answer_start": ctx.index(a)}]}
            for qid, q, a in qas]}]}
        for title, ctx, qas in articles]}


def examples():
    return [
        {"id": "q-long", "title": "Greek", "question": "  which letters ?", "context": LONG_CONTEXT,
         "answers": {"text": ["Lambda Mu"], "answer_start": [LONG_CONTEXT.index("Lambda Mu")]}},
        {"id": "q-short", "title": "Greek", "question": "which letter ?", "context": "Kappa is a letter.",
         "answers": {"text": ["Kappa"], "answer_start": [0]}},
        {"id": "q-end", "title": "Greek", "question": "which letter ?", "context": "The letter is tau upsilon.",
         "answers": {"text": ["tau upsilon."], "answer_start": [14]}},
    ]


def test_round_trip_with_answer_in_second_window(tokenizer):
    exs = examples()
    # question "which letters ?" = 3 tokens + [CLS] [SEP] [SEP] -> 10 context tokens per window; stride 4
    # means windows over the 21 context tokens start at 0, 6, 12: "Lambda Mu" (tokens 10-11) is only in window 1.
    train = prepare_train_features(exs, tokenizer, max_length=16, stride=4)
    evals = prepare_eval_features(exs, tokenizer, max_length=16, stride=4)
    assert [f["input_ids"] for f in train] == [f["input_ids"] for f in evals]
    long_feats = [f for f, e in zip(train, evals) if e["example_id"] == "q-long"]
    assert len(long_feats) == 3
    assert [f["start_positions"] != 0 for f in long_feats] == [False, True, False]  # others point at CLS 0
    hit = long_feats[1]
    answer_ids = hit["input_ids"][hit["start_positions"]:hit["end_positions"] + 1]
    assert tokenizer.decode(answer_ids) == "lambda mu"
    assert all(len(f["input_ids"]) <= 16 for f in train)
    assert "token_type_ids" in train[0]

    # offsets: None for question and special tokens, (start, end) chars for context tokens
    first = evals[0]
    assert first["offset_mapping"][0] is None and first["offset_mapping"][1] is None
    assert first["offset_mapping"][5] == (0, 5)  # "Alpha"

    # perfect logits: +5 at the true start/end, -5 elsewhere, rows right-padded to 20 like a padded batch
    start = np.full((len(train), 20), -5.0)
    end = np.full((len(train), 20), -5.0)
    for i, f in enumerate(train):
        if f["start_positions"] != 0:
            start[i, f["start_positions"]] = 5.0
            end[i, f["end_positions"]] = 5.0
    preds = postprocess_predictions(exs, evals, start, end, n_best=5, max_answer_length=10)
    assert preds == {"q-long": "Lambda Mu", "q-short": "Kappa", "q-end": "tau upsilon."}  # original casing
    assert compute_metrics("squad", preds, exs) == {"exact_match": 100.0, "f1": 100.0}

    # the bookkeeping keys are dropped for the model
    assert set(model_inputs(evals)[0]) == {"input_ids", "attention_mask", "token_type_ids"}


def test_postprocess_skips_invalid_spans(tokenizer):
    exs = examples()[1:2]
    evals = prepare_eval_features(exs, tokenizer, max_length=16, stride=4)
    n = len(evals[0]["input_ids"])
    start, end = np.zeros((1, n)), np.zeros((1, n))
    start[0, 0] = end[0, 0] = 100.0  # CLS: not in the context, must be skipped
    start[0, 8] = 50.0  # "letter" ... end before start must be skipped
    end[0, 6] = 60.0
    start[0, 6] = 10.0  # best valid: start 6, end 6 ("is")... plus end 8 candidate
    end[0, 8] = 1.0
    pred = postprocess_predictions(exs, evals, start, end, n_best=20, max_answer_length=30)
    # candidates: (6,6)=70, (6,8)=11, (8,8)=51 -> (6,6) "is"
    assert pred == {"q-short": "is"}
    # max_answer_length=0 leaves no valid span -> empty answer
    assert postprocess_predictions(exs, evals, start, end, max_answer_length=0) == {"q-short": ""}


def test_padding_and_tokenizer_checks(tokenizer):
    padded = prepare_train_features(examples()[1:], tokenizer, max_length=16, stride=4, pad_to_max_length=True)
    assert all(len(f["input_ids"]) == 16 for f in padded)
    tokenizer.padding_side = "left"
    with pytest.raises(TaskError, match="right-padded"):
        prepare_train_features(examples(), tokenizer, max_length=16, stride=4)

    class Slow:
        is_fast = False

    with pytest.raises(TaskError, match="fast tokenizer"):
        prepare_eval_features(examples(), Slow())


def test_load_squad_and_split(tmp_path):
    articles = [(f"Article_{k}", f"Text {k} says alpha.", [(f"{k}a", "What?", "alpha"), (f"{k}b", "Which?", "Text")])
                for k in range(4)]
    path = tmp_path / "dev-v1.1.json"
    path.write_text(json.dumps(squad_json(articles)))
    exs = load_squad(path)
    assert len(exs) == 8
    assert exs[0] == {"id": "0a", "title": "Article_0", "question": "What?", "context": "Text 0 says alpha.",
                      "answers": {"text": ["alpha"], "answer_start": [12]}}
    train, dev = split_by_article(path, dev_fraction=0.25, seed=0)
    assert (len(train), len(dev)) == (6, 2)
    assert len({e["title"] for e in dev}) == 1
    assert not {e["title"] for e in train} & {e["title"] for e in dev}
    assert split_by_article(exs, 0.25, 0) == (train, dev)  # deterministic, same from path or list
    # registry: a file, or a folder with the official file names
    assert load_examples("squad", path, "validation", limit=3) == exs[:3]
    assert load_examples("SQuAD1.1", tmp_path, "dev") == exs
    with pytest.raises(TaskError, match="split_by_article"):
        load_examples("squad", tmp_path, "train")


def test_squad_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": "1.1",\n "data": [\n  {"title": "x",, }]}')
    with pytest.raises(TaskError, match=r"bad\.json:3: malformed JSON at column"):
        load_squad(bad)
    v2 = tmp_path / "v2.json"
    v2.write_text(json.dumps(squad_json([("A", "ctx a", [("1", "q", "a")])], version="v2.0")))
    with pytest.raises(TaskError, match="v2.json: SQuAD version 'v2.0' is not supported"):
        load_squad(v2)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"version": "1.1", "data": [{"title": "A", "paragraphs": [{"context": "c"}]}]}))
    with pytest.raises(TaskError, match=r"broken\.json: data\[0\]\.paragraphs\[0\]: missing field 'qas'"):
        load_squad(broken)
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"version": "1.1", "data": []}))
    with pytest.raises(TaskError, match="empty dataset"):
        load_squad(empty)
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps(squad_json([("A", "ctx a", [("1", "q", "a"), ("1", "q2", "a")])])))
    with pytest.raises(TaskError, match="duplicate question id '1'"):
        load_squad(dup)
    with pytest.raises(TaskError, match="file not found"):
        load_squad(tmp_path / "missing.json")
