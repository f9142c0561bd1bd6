"""Text classification files (.jsonl / .csv), DAPT presets, the registry and feature encoding."""

import json

import pytest
from transformers import BertTokenizerFast

from lamina.tasks import (
    DOMAIN_TASKS,
    TaskError,
    encode_classification,
    get_task,
    infer_labels,
    load_examples,
    load_text_classification,
    task_names,
    text_task_spec,
)


def write_jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def tokenizer(tmp_path):
    words = "a good film bad plot the cat sat dog ran".split()
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    return BertTokenizerFast(vocab=str(vocab))


def test_jsonl_labels_inferred_from_train(tmp_path):
    d = tmp_path / "ds"
    # integer labels as the DAPT ag files have them; "10" must sort after "9"
    write_jsonl(d / "train.jsonl", [{"text": "a", "label": 10}, {"text": "b", "label": 9}, {"text": "c", "label": 1}])
    write_jsonl(d / "dev.jsonl", [{"text": "d", "label": 9, "id": "x7"}])
    assert infer_labels(d / "train.jsonl") == ("1", "9", "10")
    train = load_text_classification(d / "train.jsonl")
    assert [e["label"] for e in train] == [2, 1, 0]
    # dev maps through the TRAIN label set (a sibling train file), not its own single label
    dev = load_text_classification(d / "dev.jsonl")
    assert dev == [{"text": "d", "text_pair": None, "label": 1, "id": "x7"}]
    spec = text_task_spec(d)
    assert spec.labels == ("1", "9", "10") and spec.splits == {"train": "train.jsonl", "validation": "dev.jsonl"}
    assert spec.main_metric == "macro_f1" and "accuracy" in spec.metrics
    assert load_examples("text", d, "dev") == dev
    assert load_examples("text", d / "train.jsonl", "ignored", limit=1) == train[:1]


def test_csv_with_pair_and_custom_fields(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text('sentence,text_pair,y\n"good, film",the plot,pos\nbad film,,neg\n"multi\nline",x,pos\n',
                    encoding="utf-8")
    exs = load_text_classification(path, label_field="y", text_field="sentence")
    assert [(e["text"], e["text_pair"], e["label"]) for e in exs] == [
        ("good, film", "the plot", 1), ("bad film", None, 0), ("multi\nline", "x", 1)]
    fixed = load_text_classification(path, label_field="y", text_field="sentence", labels=["pos", "neg"])
    assert [e["label"] for e in fixed] == [0, 1, 0]


def test_textcls_errors(tmp_path):
    bad = tmp_path / "bad" / "train.jsonl"
    bad.parent.mkdir()
    bad.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": }\n')
    # "}" is the 24th character of line 2: {"text": "b", "label": }
    with pytest.raises(TaskError, match=r"train\.jsonl:2: column 24: bad JSON line"):
        load_text_classification(bad, labels=["x"])
    missing = write_jsonl(tmp_path / "m" / "train.jsonl", [{"text": "a", "label": "x"}, {"txt": "b", "label": "x"}])
    with pytest.raises(TaskError, match=r"train\.jsonl:2: missing field 'text'"):
        load_text_classification(missing, labels=["x", "y"])
    unknown = write_jsonl(tmp_path / "u" / "dev.jsonl", [{"text": "a", "label": "x"}, {"text": "b", "label": "zz"}])
    with pytest.raises(TaskError, match=r"dev\.jsonl:2: column 'label': label 'zz' not in label set \['x', 'y'\]"):
        load_text_classification(unknown, labels=["x", "y"])
    csv_path = tmp_path / "c" / "train.csv"
    csv_path.parent.mkdir()
    csv_path.write_text("text,category\nhello,a\n")
    with pytest.raises(TaskError, match=r"train\.csv:1: missing column 'label'"):
        load_text_classification(csv_path)
    short = tmp_path / "s.csv"
    short.write_text("text,label\nhello,a\nonly-text\n")
    with pytest.raises(TaskError, match=r"s\.csv:3: missing field 'label'"):
        load_text_classification(short, labels=["a"])
    empty = tmp_path / "e" / "train.jsonl"
    empty.parent.mkdir()
    empty.write_text("\n")
    with pytest.raises(TaskError, match="empty dataset"):
        load_text_classification(empty)
    with pytest.raises(TaskError, match="file not found"):
        load_text_classification(tmp_path / "nope.jsonl")
    one_label = write_jsonl(tmp_path / "one" / "train.jsonl", [{"text": "a", "label": 1}])
    with pytest.raises(TaskError, match="classification needs 2 or more"):
        text_task_spec(one_label.parent)


def test_domain_presets(tmp_path):
    sizes = {"chemprot": 13, "rct": 5, "acl_arc": 6, "sciie": 7, "hyperpartisan": 2, "ag": 4, "helpfulness": 2,
             "imdb": 2}
    assert {name: spec.num_labels for name, spec in DOMAIN_TASKS.items()} == sizes
    assert get_task("rct").labels == ("BACKGROUND", "OBJECTIVE", "METHODS", "RESULTS", "CONCLUSIONS")
    assert get_task("citation_intent").labels == ("Background", "Uses", "CompareOrContrast", "Motivation",
                                                  "Extends", "Future")
    assert get_task("SciERC").labels[-1] == "USED-FOR"
    assert all(s.main_metric == "macro_f1" and s.metrics == ("accuracy", "macro_f1") for s in DOMAIN_TASKS.values())
    # the DAPT folder layout: <root>/citation_intent/{train,dev,test}.jsonl
    root = tmp_path / "dapt"
    write_jsonl(root / "citation_intent" / "dev.jsonl", [{"text": "we use X", "label": "Uses"},
                                                         {"text": "unlike Y", "label": "CompareOrContrast"}])
    assert [e["label"] for e in load_examples("acl-arc", root, "validation")] == [1, 2]
    write_jsonl(root / "ag" / "test.jsonl", [{"text": "stocks", "label": 3}, {"text": "goal", "label": 2}])
    assert [e["label"] for e in load_examples("ag_news", root / "ag", "test")] == [2, 1]
    write_jsonl(root / "hp" / "train.jsonl", [{"text": "t", "label": "true"}, {"text": "f", "label": False}])
    assert [e["label"] for e in load_examples("hyperpartisan", root / "hp" / "train.jsonl", "train")] == [1, 0]


def test_get_task_names():
    for name in ("sst2", "SST-2", "sst-2", "Sst_2"):
        assert get_task(name).name == "sst2"
    assert get_task("STS-B").name == "stsb"
    assert get_task("mnli-mm").name == "mnli_mismatched"
    assert get_task("MNLI-m").name == "mnli_matched"
    assert get_task("squad").kind == "qa"
    assert "cola" in task_names() and "imdb" in task_names()
    with pytest.raises(TaskError, match="unknown task 'glue9'; known tasks: cola, sst2"):
        get_task("glue9")


def test_encode_classification(tokenizer):
    single = [{"text": "a good film", "text_pair": None, "label": 1, "id": "0"},
              {"text": "bad plot", "text_pair": None, "label": 0, "id": "1"}]
    feats = encode_classification(single, tokenizer, "sst2", max_length=8)
    assert feats[0] == {"input_ids": [2, 5, 6, 7, 3], "attention_mask": [1] * 5, "token_type_ids": [0] * 5,
                        "labels": 1}
    assert type(feats[1]["labels"]) is int
    pairs = [{"text": "the cat sat", "text_pair": "the dog ran", "label": 3.8, "id": "0"}]
    f = encode_classification(pairs, tokenizer, get_task("stsb"), max_length=6)[0]
    assert f["labels"] == 3.8 and type(f["labels"]) is float
    assert len(f["input_ids"]) == 6 and f["token_type_ids"][-1] == 1  # truncated, second segment marked
    unlabelled = encode_classification([{"text": "cat", "text_pair": None, "label": None, "id": "0"}], tokenizer, "sst2")
    assert "labels" not in unlabelled[0]
    from transformers import DataCollatorWithPadding

    batch = DataCollatorWithPadding(tokenizer)(feats)
    assert batch["input_ids"].shape == (2, 5) and batch["labels"].tolist() == [1, 0]
    with pytest.raises(TaskError, match="QA task"):
        encode_classification(single, tokenizer, "squad")
